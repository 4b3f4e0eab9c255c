"""`sift view`: result sets and runs in a browser, offline and read-only.

    sift view results/gsm8k-qwen2.5-coder-1.5b --port 8765
    sift view --checkpoints .sift/checkpoints.sqlite

Every folder and the checkpoint store are opened before the server listens: a folder
that holds no result sets, a file that is not a SIFT checkpoint store or a database
that refuses is one line and exit status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Any

from sift_graph.checkpoints import checkpoint_kind, default_checkpoints, describe_checkpoints, sqlite_file
from sift_graph.cli.common import UsageError
from sift_graph.view import ResultSources, RunStoreUnavailable, check_results_folder, create_view_app, open_run_store

DEFAULT_PORT = 8765


def add_view_command(commands: Any) -> None:
    parser = commands.add_parser("view", help="see result sets and runs in a browser (read-only, offline)")
    parser.add_argument("paths", nargs="*", metavar="PATH", help="folders of result sets (written by sift eval --out)")
    parser.add_argument(
        "--checkpoints",
        default=None,
        help="the runs to show: a SQLite file, a postgresql:// URL or 'memory' (default $SIFT_CHECKPOINTS, "
        "else .sift/checkpoints.sqlite, as for sift solve, when that file exists)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT})")
    parser.set_defaults(run=view_command)


def checkpoint_setting(args: argparse.Namespace) -> str | None:
    """The store to show: the flag's, else the default one if it is there (none otherwise)."""
    if args.checkpoints is not None:
        return str(args.checkpoints)
    setting = default_checkpoints()
    if checkpoint_kind(setting) == "sqlite" and not Path(sqlite_file(setting)).is_file():
        return None
    return setting


def view_command(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port: expected 0 to 65535, got {args.port}")
    try:
        folders = [check_results_folder(path) for path in args.paths]
        setting = checkpoint_setting(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if not folders and setting is None:
        raise UsageError("nothing to view: give folders of result sets, or --checkpoints")
    asyncio.run(view(folders, setting, args.host, args.port))
    return 0


async def view(folders: list[Path], setting: str | None, host: str, port: int) -> None:
    """Open the store (a failure is one line), then serve the pages until stopped."""
    import uvicorn

    async with contextlib.AsyncExitStack() as stack:
        saver = None
        if setting is not None:
            try:
                saver = await stack.enter_async_context(open_run_store(setting))
            except RunStoreUnavailable as exc:
                raise UsageError(str(exc)) from exc
        results = ResultSources(folders) if folders else None
        for problem in results.warm() if results else []:
            print(f"sift view: {problem} (shown on its page)", file=sys.stderr, flush=True)
        app = create_view_app(results, (lambda: saver) if saver else None)
        config = uvicorn.Config(app, host=host, port=port, lifespan="off", log_level="warning")
        shown = [str(folder) for folder in folders] + (
            [f"checkpoints {describe_checkpoints(setting)}"] if setting else []
        )
        print(f"sift view: http://{host}:{port}/ ({', '.join(shown)})", file=sys.stderr, flush=True)
        try:
            await uvicorn.Server(config).serve()
        except SystemExit as exc:  # uvicorn exits when it cannot listen, having said why
            raise UsageError(f"cannot listen on {host}:{port}") from exc
