"""The evaluation harness behind `sift eval` and `sift report` (see docs/evaluation.md).

- `datasets`: test sets by name or JSONL path, in the usual public layouts;
- `runner`: CoT baseline and SIFT per question, bounded concurrency, resumable results;
- `results`: the append-only result store, keyed by dataset, question and config digest;
- `summary` and `stats`: per-stage accuracy, costs, Wilson intervals, exact McNemar;
- `report`: the terminal table, Markdown, JSON and the accuracy-vs-tokens plot.
"""
