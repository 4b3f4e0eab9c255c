"""The pages of `sift view`, on Starlette, drawn from Jinja2 templates (package data).

    app = create_view_app(ResultSources([Path("runs")]), lambda: saver)

Handlers stay thin: `sources` and `questions` give a result set's page data, `runs` a
checkpoint store's, `cards` the rounds. Every page takes ids only (a set id, a question
key, a thread id), looked up or checked before use; every link is relative to the
mount point (`root_path`), so the same app serves `sift view` at / and `sift serve`
under /view. Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any

import jinja2
from langgraph.checkpoint.base import BaseCheckpointSaver
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from sift_graph.view import runs
from sift_graph.view.cards import round_cards
from sift_graph.view.questions import (
    COMPARED,
    EXIT_LABELS,
    FLAG_LABELS,
    OUTCOME_LABELS,
    SORTS,
    compare_records,
    counts_by,
    filter_rows,
    sort_rows,
)
from sift_graph.view.sources import LoadedSet, ResultSources

STATIC_FILES = {"view.css": "text/css", "view.js": "text/javascript"}
SaverSource = Callable[[], BaseCheckpointSaver[str] | None]


class PageError(Exception):
    """A page that cannot be drawn: its status and a message for the person reading."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def template_environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("sift_graph.view", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _choice(request: Request, name: str, allowed: dict[str, str]) -> str | None:
    value = request.query_params.get(name) or None
    if value is not None and value not in allowed:
        raise PageError(400, f"{name}: expected one of {', '.join(allowed)}, got {value!r}")
    return value


class ViewPages:
    """The route handlers, over result-set folders and (optionally) a checkpoint store."""

    def __init__(self, results: ResultSources | None, saver: SaverSource | None) -> None:
        self.results = results
        self.saver = saver
        self.templates = template_environment()
        self._reader: tuple[BaseCheckpointSaver[str], Any] | None = None
        """The reading graph over the saver it was built for (one store at a time: a new
        saver, as after a server restart, replaces it rather than joining it)."""

    def render(self, request: Request, template: str, status: int = 200, **data: Any) -> HTMLResponse:
        base = request.scope.get("root_path", "")
        html = self.templates.get_template(template).render(
            base=base, has_results=self.results is not None, has_runs=self.saver is not None, **data
        )
        return HTMLResponse(html, status_code=status)

    def _set(self, set_id: str) -> LoadedSet:
        if self.results is None:
            raise PageError(404, "this server shows no result sets")
        try:
            loaded = self.results.get(set_id)
        except ValueError as exc:
            raise PageError(422, str(exc)) from exc
        if loaded is None:
            raise PageError(404, f"no result set {set_id!r}")
        return loaded

    def _graph(self) -> Any:
        saver = self.saver() if self.saver else None
        if saver is None:
            raise PageError(404, "this server shows no checkpoint store")
        if self._reader is None or self._reader[0] is not saver:
            self._reader = (saver, runs.reader_graph(saver))
        return self._reader[1]

    def _thread(self, request: Request) -> str:
        thread_id = request.path_params["thread_id"]
        if not runs.valid_thread_id(thread_id):
            raise PageError(400, "thread: expected letters, digits and . _ : - (at most 128)")
        return str(thread_id)

    async def index(self, request: Request) -> Response:
        if self.results is None and self.saver is not None:
            return await self.thread_list(request)  # a server's own runs: all there is
        sets, problems = [], []
        for set_id in self.results.descriptions() if self.results else {}:
            try:
                loaded = self.results.get(set_id) if self.results else None
            except ValueError as exc:
                problems.append(str(exc))
                continue
            if loaded is not None:
                sets.append(loaded)
        return self.render(request, "index.html", sets=sets, problems=problems)

    async def result_set(self, request: Request) -> Response:
        loaded = self._set(request.path_params["set_id"])
        return self.render(
            request,
            "set.html",
            set=loaded,
            report=loaded.report(),
            has_plot=loaded.plot_path() is not None,
            outcomes=counts_by(loaded.rows, "outcome", list(OUTCOME_LABELS)),
            outcome_labels=OUTCOME_LABELS,
        )

    async def plot(self, request: Request) -> Response:
        path = self._set(request.path_params["set_id"]).plot_path()
        if path is None:
            raise PageError(404, "no plot: run 'sift report' on the folder to draw it")
        return FileResponse(path, media_type="image/png")

    async def questions(self, request: Request) -> Response:
        loaded = self._set(request.path_params["set_id"])
        chosen = {
            "outcome": _choice(request, "outcome", OUTCOME_LABELS),
            "exit": _choice(request, "exit", EXIT_LABELS),
            "flag": _choice(request, "flag", FLAG_LABELS),
            "sort": _choice(request, "sort", SORTS),
        }
        rows = sort_rows(
            filter_rows(loaded.rows, outcome=chosen["outcome"], exit=chosen["exit"], flag=chosen["flag"]),
            chosen["sort"],
        )
        return self.render(
            request,
            "questions.html",
            set=loaded,
            rows=rows,
            chosen=chosen,
            labels={"outcome": OUTCOME_LABELS, "exit": EXIT_LABELS, "flag": FLAG_LABELS, "sort": SORTS},
            counts={
                "outcome": counts_by(loaded.rows, "outcome", list(OUTCOME_LABELS)),
                "exit": counts_by(loaded.rows, "exit", list(EXIT_LABELS)),
                "flag": counts_by(loaded.rows, "flags", list(FLAG_LABELS)),
            },
        )

    async def question(self, request: Request) -> Response:
        loaded = self._set(request.path_params["set_id"])
        key = request.path_params["key"]
        record = loaded.records.get(key)
        if record is None:
            raise PageError(404, f"no finished question {key!r} in this result set")
        row = next(row for row in loaded.rows if row["key"] == key)
        question = str(record.get("question") or "")
        return self.render(
            request,
            "question.html",
            set=loaded,
            row=row,
            record=record,
            cards=round_cards(record.get("rounds") or [], question),
            outcome_labels=OUTCOME_LABELS,
            exit_labels=EXIT_LABELS,
            flag_labels=FLAG_LABELS,
        )

    async def compare(self, request: Request) -> Response:
        if self.results is None:
            raise PageError(404, "this server shows no result sets")
        ids = list(self.results.descriptions())
        first_id, second_id = request.query_params.get("a"), request.query_params.get("b")
        method = _choice(request, "method", COMPARED) or "sift"
        only_differ = request.query_params.get("only") == "differ"
        comparison = None
        first = second = None
        if first_id and second_id:
            first, second = self._set(first_id), self._set(second_id)
            comparison = compare_records(first.result_set.records, second.result_set.records, method)
            if only_differ:
                comparison["shown"] = [row for row in comparison["rows"] if row["differ"]]
            else:
                comparison["shown"] = comparison["rows"]
        return self.render(
            request,
            "compare.html",
            ids=ids,
            first=first,
            second=second,
            method=method,
            methods=COMPARED,
            only_differ=only_differ,
            comparison=comparison,
        )

    async def thread_list(self, request: Request) -> Response:
        graph = self._graph()
        return self.render(request, "runs.html", threads=await runs.threads(graph.checkpointer))

    async def run(self, request: Request) -> Response:
        thread_id = self._thread(request)
        page = await runs.run_page(self._graph(), thread_id)
        if page is None:
            raise PageError(404, f"no run with thread {thread_id!r} in this checkpoint store")
        return self.render(request, "run.html", run=page, cards=round_cards(page["rounds"], page["question"]))

    async def run_version(self, request: Request) -> Response:
        checkpoint = await runs.latest_checkpoint(self._graph(), self._thread(request))
        return JSONResponse({"checkpoint": checkpoint}, headers={"Cache-Control": "no-store"})

    async def run_history(self, request: Request) -> Response:
        thread_id = self._thread(request)
        steps = await runs.history(self._graph(), thread_id)
        if not steps:
            raise PageError(404, f"no run with thread {thread_id!r} in this checkpoint store")
        return self.render(request, "history.html", thread_id=thread_id, steps=steps)

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            raise PageError(404, "no such file")
        text = resources.files("sift_graph.view").joinpath("static", name).read_text(encoding="utf-8")
        return Response(text, media_type=STATIC_FILES[name], headers={"Cache-Control": "max-age=300"})


def create_view_app(results: ResultSources | None = None, saver: SaverSource | None = None) -> Starlette:
    """The pages over `results` (result-set folders) and the store `saver()` returns
    (None while it is not open); either may be absent."""
    pages = ViewPages(results, saver)

    def guarded(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def page(request: Request) -> Response:
            try:
                response: Response = await handler(request)
                return response
            except PageError as exc:
                return pages.render(request, "error.html", status=exc.status, message=exc.message)
            except runs.StoreReadError as exc:
                return pages.render(request, "error.html", status=503, message=str(exc))

        return page

    routes = [
        ("/", pages.index),
        ("/sets/{set_id}", pages.result_set),
        ("/sets/{set_id}/plot.png", pages.plot),
        ("/sets/{set_id}/questions", pages.questions),
        ("/sets/{set_id}/questions/{key}", pages.question),
        ("/compare", pages.compare),
        ("/runs", pages.thread_list),
        ("/runs/{thread_id}", pages.run),
        ("/runs/{thread_id}/version", pages.run_version),
        ("/runs/{thread_id}/history", pages.run_history),
        ("/static/{name}", pages.static),
    ]
    return Starlette(routes=[Route(path, guarded(handler), methods=["GET"]) for path, handler in routes])
