"""`python -m benchmarks`: measure SIFT's overhead, latency, throughput, memory and real
model speed, print one table, exit 1 when a target is missed (2 when the benchmark
itself could not run properly). See BENCHMARKS.md."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
import warnings
from typing import Any

Row = dict[str, Any]


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, load average {load:.2f} at start"


def _row(section: str, name: str, value: str, target: str, ok: bool | None) -> Row:
    return {
        "section": section,
        "name": name,
        "value": value,
        "target": target,
        "status": "-" if ok is None else ("ok" if ok else "MISSED"),
    }


def overhead_kinds() -> tuple[str, ...]:
    from benchmarks.overhead import KINDS

    return KINDS


def overhead_rows(args: argparse.Namespace) -> list[Row]:
    from benchmarks import overhead

    results = overhead.run(
        paths=tuple(args.paths),
        kinds=tuple(args.checkpointers),
        postgres_url=args.postgres,
        batch=args.batch,
        repeats=args.repeats,
    )
    rows = []
    for r in results:
        name = f"{r.path} path, {r.checkpointer}" + (
            "" if r.checkpointer == "none" else f" (durability={overhead.DURABILITY})"
        )
        if r.skipped:
            rows.append(_row("1 overhead", name, f"skipped: {r.skipped}", f"<= {r.target_ms} ms/call", None))
            continue
        over = r.over_floor_ms_per_call
        beside = "" if over is None else f"; over the floor beside it {over:+.2f}"
        value = (
            f"{r.extra_ms_per_call:+.2f} ms/call (cpu {r.extra_cpu_ms_per_call:+.2f}{beside}; "
            f"question {r.graph_ms:.1f} vs plain {r.plain_ms:.1f} ms)"
        )
        target = "-" if r.target_ms is None else f"<= {r.target_ms} ms/call"
        ok = None if r.target_ms is None else r.extra_ms_per_call <= r.target_ms
        rows.append(_row("1 overhead", name, value, target, ok))
    # LangGraph's own share: the same graph with canned node updates and no model at all.
    for memory in (False, True):
        floor = asyncio.run(overhead.measure_floor(batch=args.batch, repeats=args.repeats, memory=memory))
        where = f"memory (durability={overhead.DURABILITY})" if memory else "none"
        rows.append(
            _row(
                "1 overhead",
                f"async path, {where}: LangGraph floor (canned nodes, no model)",
                f"{floor:.2f} ms/call",
                "-",
                None,
            )
        )
    return rows


def serving_rows(args: argparse.Namespace) -> list[Row]:
    from benchmarks import serving

    rows = []
    for r in serving.run_latency(args.latency_ms / 1000, args.latency_repeats):
        rows.append(
            _row(
                "2 latency",
                f"{r.workload}: wall vs critical path (L={r.latency_ms:.0f} ms)",
                f"{r.wall_ms:.0f} ms vs {r.critical_ms:.0f} ms = {r.vs_critical:.3f}x",
                f"<= {serving.LATENCY_TARGET:.2f}x",
                r.vs_critical <= serving.LATENCY_TARGET,
            )
        )
        is_gated = r.workload == "agree"  # the cascade's best possible speedup is 11/8
        rows.append(
            _row(
                "2 latency",
                f"{r.workload}: speedup over sequential ({r.sequential_ms:.0f} ms)",
                f"{r.speedup:.2f}x (best possible {r.sequential_ms / r.critical_ms:.2f}x)",
                f">= {serving.SPEEDUP_TARGET}x" if is_gated else "-",
                r.speedup >= serving.SPEEDUP_TARGET if is_gated else None,
            )
        )
    # The server must not be the bottleneck: alone, with the most requests the throughput
    # runs keep in flight (two predictions per question at the highest C).
    clients = 2 * max(args.concurrency)
    server = serving.run_server_alone(args.throughput_latency_ms / 1000, clients, 2)
    rows.append(
        _row(
            "3 throughput",
            f"server alone, {clients} clients x 2 requests",
            f"{server:.3f}x ideal",
            "<= 1.10x (else the rows below are invalid)",
            server <= 1.10,
        )
    )
    gate = 64 if 64 in args.concurrency else max(args.concurrency)
    cpu = time.process_time()
    results = serving.run_throughput(
        args.throughput_latency_ms / 1000, tuple(args.concurrency), args.rounds, plain_at=gate
    )
    cpu = time.process_time() - cpu
    plain = results.pop()
    questions = sum(r.questions for r in results) + plain.questions
    for r in results:
        gated = r.concurrency <= 64
        rows.append(
            _row(
                "3 throughput",
                f"C={r.concurrency:<3} N={r.questions:<4} (L={args.throughput_latency_ms:.0f} ms)",
                f"{r.wall_s:.2f} s vs ideal {r.ideal_s:.2f} s = {r.vs_ideal:.3f}x",
                f"<= {serving.THROUGHPUT_TARGET:.2f}x" if gated else "-",
                r.vs_ideal <= serving.THROUGHPUT_TARGET if gated else None,
            )
        )
    rows.append(
        _row(
            "3 throughput",
            f"C={plain.concurrency:<3} N={plain.questions:<4} plain cascade, no graph (same client)",
            f"{plain.wall_s:.2f} s vs ideal {plain.ideal_s:.2f} s = {plain.vs_ideal:.3f}x",
            "-",
            None,
        )
    )
    rows.append(
        _row(
            "3 throughput",
            "client CPU per question (graph or plain + OpenAI client)",
            f"{cpu / questions * 1000:.1f} ms",
            "-",
            None,
        )
    )
    return rows


def memory_rows(args: argparse.Namespace) -> list[Row]:
    from benchmarks import memory

    r = memory.run(args.questions)
    return [
        _row(
            "4 memory",
            f"RSS over {r.questions} questions (16 at a time, results kept)",
            f"RSS start {r.rss_start_mb:.0f} MB, after warm-up {r.rss_warm_mb:.0f} MB, end {r.rss_end_mb:.0f} MB; "
            f"peak {r.peak_rss_warm_mb:.0f} MB after warm-up, {r.peak_rss_mb:.0f} MB at the end",
            "-",
            None,
        ),
        _row(
            "4 memory",
            "growth per question after warm-up",
            f"{r.growth_per_question_kb:.1f} KB (results kept: {r.result_per_question_kb:.1f} KB each)",
            f"<= results + {memory.GROWTH_SLACK_BYTES // 1024} KB",
            r.ok,
        ),
    ]


def real_model_rows(args: argparse.Namespace) -> list[Row]:
    from benchmarks import real_model

    r = real_model.run(args.max_tokens, args.real_questions)
    return [
        _row(
            "5 real model",
            f"SmolLM2-135M, max_tokens={r.max_tokens}, {r.questions} question(s)",
            f"wall {r.wall_per_question_s:.1f} s/question, {r.calls_per_question:.0f} calls, "
            f"{r.output_tokens_per_s:.1f} output tokens/s, load {r.load_s:.1f} s",
            "-",
            None,
        ),
        _row(
            "5 real model",
            "share of wall inside model calls",
            f"{r.model_share * 100:.1f}%",
            f">= {real_model.MODEL_SHARE_TARGET * 100:.0f}%",
            r.model_share >= real_model.MODEL_SHARE_TARGET,
        ),
    ]


def local_rows(args: argparse.Namespace) -> list[Row]:
    from benchmarks import local

    r = local.run(args.local_max_tokens, args.local_questions)
    rows = [
        _row(
            "6 local",
            f"{r.model} ({r.dtype} on {r.device}), max_tokens={r.max_tokens}",
            f"load {r.load_s:.1f} s",
            "-",
            None,
        )
    ]
    for level in r.levels:
        target = r.targets.get(level.in_flight)
        speedup = r.speedup(level)
        rows.append(
            _row(
                "6 local",
                f"C={level.in_flight:<3} N={level.questions:<3} {level.calls} calls",
                f"{level.tokens_per_s:.1f} output tokens/s = {speedup:.2f}x C=1 ({level.output_tokens} tokens in "
                f"{level.wall_s:.1f} s); rows per step {level.rows_per_step:.1f}, over time "
                + " ".join(f"{rows:.0f}" for rows in level.timeline)
                + f"; floor (transformers generate, batch {level.floor_batch}): {level.floor_tokens_per_s:.1f} "
                f"tokens/s = {r.floor_speedup(level):.2f}x",
                "-" if target is None else f">= {target:.0f}x C=1",
                None if target is None else speedup >= target,
            )
        )
    return rows


def resume_rows(args: argparse.Namespace) -> list[Row]:
    from benchmarks import resume

    rows = []
    for r in resume.run_resume():
        share, lost = r.after_interrupt / resume.CALL_TOKENS, r.again / resume.CALL_TOKENS
        before = r.continuation == "restart"
        rows.append(
            _row(
                "7 resume",
                f"interrupted at {r.fraction:.0%} of a {resume.CALL_TOKENS}-token call, {r.continuation}",
                f"{share:.1%} of the call generated after the interrupt; {lost:.1%} generated twice",
                "-" if before else f"< 5% twice (saved every {resume.SAVE_EVERY_TOKENS} tokens or 2 s)",
                None if before else lost < 0.05,
            )
        )
    seams = resume.measure_seams()
    rows.append(
        _row(
            "7 resume",
            f"seams: {seams.replies} greedy GSM8K replies (embedded model) cut after each token, re-tokenized",
            f"{seams.differing} of {seams.cuts} cuts re-tokenize differently ({seams.differing / seams.cuts:.1%}); "
            f"{seams.replies_with_one} of {seams.replies} replies have one",
            "-",
            None,
        )
    )
    cost = resume.run_cost(repeats=3 if args.quick else 5)
    for name in ("streamed", "streamed + partials"):
        extra = cost[name] - cost["whole"]
        per_token = extra / resume.COST_TOKENS * 1000
        rows.append(
            _row(
                "7 resume",
                f"cost per call, {name} vs whole ({resume.COST_TOKENS} tokens, in process)",
                f"{extra:+.2f} ms/call ({per_token:+.1f} us/token; whole {cost['whole']:.2f} ms)",
                "<= +0.1 ms/call" if name == "streamed + partials" else "-",
                (cost["streamed + partials"] - cost["streamed"]) <= 0.1 if name == "streamed + partials" else None,
            )
        )
    return rows


def server_eval_rows(args: argparse.Namespace) -> list[Row]:
    """`sift eval --server` through langgraph dev, beside the in-process eval (benchmarks/server_eval.py)."""
    from benchmarks import server_eval

    rows = []
    for r in server_eval.run(args.server_latency_ms / 1000, args.server_questions, tuple(args.server_concurrency)):
        rows.append(
            _row(
                "8 eval on a server",
                f"{r.path:<10} C={r.concurrency:<3} N={r.questions} (L={args.server_latency_ms:.0f} ms)",
                f"{r.wall_s:.2f} s vs ideal {r.ideal_s:.2f} s = {r.vs_ideal:.2f}x"
                + (f", {r.errors} errors" if r.errors else ""),
                "-",
                None if not r.errors else False,
            )
        )
    return rows


SECTIONS = {
    "overhead": overhead_rows,
    "serving": serving_rows,
    "memory": memory_rows,
    "real": real_model_rows,
    "local": local_rows,
    "resume": resume_rows,
    "server": server_eval_rows,
}


def print_table(rows: list[Row]) -> None:
    widths = [
        max(len(row[key]) for row in [*rows, {"section": "", "name": "", "value": "", "target": ""}])
        for key in ("section", "name", "value", "target")
    ]
    for row in rows:
        print(
            "  ".join(
                row[key].ljust(width) for key, width in zip(("section", "name", "value", "target"), widths, strict=True)
            )
            + "  "
            + row["status"]
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes for a sanity run (a minute); numbers are rougher, targets still apply",
    )
    parser.add_argument("--only", nargs="+", choices=sorted(SECTIONS), help="run only these sections")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("SIFT_BENCH_POSTGRES_URL"),
        help="PostgreSQL URL for the overhead row (default $SIFT_BENCH_POSTGRES_URL; none: skipped)",
    )
    parser.add_argument("--json", help="also write the rows and settings to this file")
    parser.add_argument(
        "--paths", nargs="+", choices=("sync", "async"), default=["sync", "async"], help="overhead rows: these paths"
    )
    parser.add_argument(
        "--checkpointers",
        nargs="+",
        choices=overhead_kinds(),
        default=list(overhead_kinds()),
        help="overhead rows: these checkpointers (the LangGraph floor rows are always run)",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.batch, args.repeats = (5, 5) if quick else (10, 15)
    args.latency_ms, args.latency_repeats = (100.0, 3) if quick else (200.0, 5)
    args.throughput_latency_ms = 1000.0 if quick else 2000.0
    args.concurrency = [1, 4, 16] if quick else [1, 2, 4, 8, 16, 32, 64, 128]
    args.rounds = 2
    args.questions = 300 if quick else 1000
    args.max_tokens, args.real_questions = (16, 1) if quick else (64, 1)
    args.local_max_tokens, args.local_questions = (32, 1) if quick else (64, 2)
    args.server_latency_ms, args.server_questions, args.server_concurrency = (100.0, 16 if quick else 64, [1, 8, 32])
    warnings.filterwarnings("ignore")

    machine = _machine()
    print(f"machine: {machine}", flush=True)
    rows: list[Row] = []
    failed_to_run = False
    for name in args.only or list(SECTIONS):
        started = time.perf_counter()
        try:
            section_rows = SECTIONS[name](args)
        except Exception as exc:  # report and go on: one broken section must not hide the rest
            failed_to_run = True
            section_rows = [_row(name, "could not run", f"{type(exc).__name__}: {exc}"[:200], "-", False)]
        rows += section_rows
        print(f"[{name}: {time.perf_counter() - started:.0f} s]", file=sys.stderr, flush=True)
    print()
    print_table(rows)
    missed = [row for row in rows if row["status"] == "MISSED"]
    print(f"\n{len(missed)} target(s) missed" if missed else "\nall targets met")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"machine": machine, "quick": quick, "rows": rows}, out, indent=2)
    if failed_to_run:
        return 2
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
