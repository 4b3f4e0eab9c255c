"""`sift view`: every evaluation and every run in a browser, offline, read-only.

- `cards`: a round as a card (its sticker diffed against the previous round's);
- `questions`: the question list's rows, filters and sorts; two sets compared;
- `sources`: result-set folders, read again when they change, summarized as `sift report` does;
- `runs`: a checkpoint store's threads, runs and checkpoint history;
- `app`: the Starlette pages (`create_view_app`), also mounted by `sift serve` under /view.
"""

from sift_graph.view.app import create_view_app
from sift_graph.view.runs import RunStoreUnavailable, open_run_store
from sift_graph.view.sources import ResultSources, check_results_folder

__all__ = ["ResultSources", "RunStoreUnavailable", "check_results_folder", "create_view_app", "open_run_store"]
