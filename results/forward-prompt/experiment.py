"""Forward optimization on inverse-generation drafts: our prompt against a candidate, held out.

The GSM8K test[:100] records (../README.md) show inverse generation passing computed
results off as facts, and forward optimization keeping them. This script measures, on
questions that run never saw (GSM8K test[100:]), what each forward prompt does to the same
drafts, made the way SIFT makes them, and what a check in code (no call) would do:

    sticker -> query + sticker solution -> inverse draft -> forward(current), forward(candidate)

Per draft and refinement: numbers the question does not state, before and after; question
numbers the refined sticker lost; unchanged; malformed; the forward call's tokens.
Greedy decoding, 1024 new tokens at most, as `sift eval` calls. Resumable: one JSON line
per question in records.jsonl beside this file. Run it alone with the model server:

    python results/forward-prompt/experiment.py --base-url http://127.0.0.1:8765/v1 --first 100 --count 49
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from sift_graph import prompts
from sift_graph.calls import ModelReply, call_model
from sift_graph.context import SiftContext
from sift_graph.evaluation.datasets import load_dataset
from sift_graph.evaluation.diagnostics import invented_numbers, numbers_in
from sift_graph.faults import is_unreachable
from sift_graph.models import resolve_model
from sift_graph.models.specs import Connection
from sift_graph.state import Role, Sticker
from sift_graph.steps import sticker_from
from sift_graph.sticker import parse_sticker, render_sticker

RECORDS = Path(__file__).with_name("records.jsonl")

# Written from the test[:100] findings: a result worked out from the facts is not a fact;
# relations are copied as stated; one example where the four of prompts.FORWARD_PROMPT
# cost 761 tokens a call. Revised once on held-out question 101, where the first wording
# ("remove it, or replace it with the facts it was worked out from") made the model
# write its calculations into the conditions.
CANDIDATE_FORWARD_PROMPT = """\
You check a Sticker against the problem it summarizes and return a corrected Sticker.

A Sticker lists only the facts the problem states and the one thing it asks. Fix every error:
- a fact of the problem is missing: add it;
- a fact is changed (a number, unit, rate, ratio or "times" relation): copy it as the problem states it;
- a condition states a number the problem does not give (a result worked out from the facts, or a guess): remove it;
- the question asks for something other than what the problem asks: restate it.
Never calculate: a condition is a fact in the problem's own words, not a result. If nothing is wrong, return the Sticker unchanged.

Format:
{format}

Example
Problem: A farm has 12 cows and twice as many sheep as cows. Each sheep gives 3 kg of wool a year. How much wool do the sheep give in a year?
Sticker:
**Conditions:**
1. The farm has 24 sheep.
2. Each sheep gives 3 kg of wool a year.
3. The sheep give 72 kg of wool a year.
**Question:** How many sheep are there?
Corrected Sticker:
**Conditions:**
1. The farm has 12 cows.
2. The farm has twice as many sheep as cows.
3. Each sheep gives 3 kg of wool a year.
**Question:** How many kilograms of wool do the sheep give in a year?

Now your turn.
Problem: {question}
Sticker:
{sticker}
Corrected Sticker:"""

FORWARD_PROMPTS = {"current": prompts.FORWARD_PROMPT, "candidate": CANDIDATE_FORWARD_PROMPT}


def sticker_facts(sticker: Sticker, question: str) -> dict[str, Any]:
    """What a sticker states that the question does not, and what of the question it lost."""
    stated = numbers_in(sticker["text"])
    return {
        "text": sticker["text"],
        "well_formed": sticker["well_formed"],
        "foreign_numbers": sorted(invented_numbers(sticker["text"], question)),
        "lost_numbers": sorted(numbers_in(question) - stated),
    }


def without_foreign_facts(draft_text: str, question: str) -> dict[str, Any]:
    """The check done in code instead of by a prompt: drop every condition of the draft
    that states a number the question does not (no model call)."""
    draft = parse_sticker(draft_text)
    kept = [fact for fact in draft["conditions"] if not invented_numbers(fact, question)]
    text = render_sticker(kept, draft["question"])
    return {**sticker_facts(parse_sticker(text), question), "unchanged": text == draft["text"]}


def run_question(model: Any, context: SiftContext, question: str) -> dict[str, Any]:
    def call(role: Role, prompt: str) -> ModelReply:
        return call_model(model, role, prompt, context, None)

    sticker = sticker_from(call("sticker", prompts.sticker_prompt(question)))
    solution = call("predict_query_sticker", prompts.predict_query_sticker_prompt(question, sticker["text"]))
    draft = sticker_from(call("inverse", prompts.inverse_prompt(solution.text)))
    record: dict[str, Any] = {"draft": sticker_facts(draft, question), "forward": {}}
    for name, template in FORWARD_PROMPTS.items():
        prompt = template.format(format=prompts.STICKER_FORMAT, question=question, sticker=draft["text"])
        reply = call("forward", prompt)
        refined = sticker_from(reply)
        record["forward"][name] = {
            **sticker_facts(refined, question),
            "unchanged": refined["text"] == draft["text"],
            "input_tokens": reply.input_tokens,
            "output_tokens": reply.output_tokens,
        }
    return record


def summary_rows(records: list[dict[str, Any]], questions: dict[str, str]) -> list[list[str]]:
    """One row for the drafts, one per forward prompt, one for the check in code: counts
    over the questions. A refinement "clears" a draft's foreign numbers when it keeps none
    of them, and "adds" when it states one the draft did not."""
    n = len(records)
    refinements = {
        **{f"forward: {name}": [record["forward"][name] for record in records] for name in FORWARD_PROMPTS},
        "in code: drop such conditions": [
            without_foreign_facts(record["draft"]["text"], questions[record["id"]]) for record in records
        ],
    }

    def share(count: int, of: int = n) -> str:
        return f"{count} of {of}"

    drafts = [record["draft"] for record in records]
    with_foreign = sum(bool(d["foreign_numbers"]) for d in drafts)
    rows = [
        [
            "inverse draft",
            share(with_foreign),
            "-",
            "-",
            share(sum(bool(d["lost_numbers"]) for d in drafts)),
            "-",
            share(sum(not d["well_formed"] for d in drafts)),
            "-",
        ]
    ]
    for name, refined in refinements.items():
        pairs = list(zip((record["draft"] for record in records), refined, strict=True))
        cleared = sum(
            bool(d["foreign_numbers"]) and not set(d["foreign_numbers"]) & set(r["foreign_numbers"]) for d, r in pairs
        )
        added = sum(bool(set(r["foreign_numbers"]) - set(d["foreign_numbers"])) for d, r in pairs)
        rows.append(
            [
                name,
                share(sum(bool(r["foreign_numbers"]) for r in refined)),
                share(cleared, with_foreign),
                share(added),
                share(sum(bool(r["lost_numbers"]) for r in refined)),
                share(sum(r["unchanged"] for r in refined)),
                share(sum(not r["well_formed"] for r in refined)),
                tokens_per_call(refined),
            ]
        )
    return rows


def tokens_per_call(refined: list[dict[str, Any]]) -> str:
    if "input_tokens" not in refined[0]:
        return "0 (no call)"
    inputs = statistics.fmean(r["input_tokens"] for r in refined)
    return f"{inputs:.0f} + {statistics.fmean(r['output_tokens'] for r in refined):.0f}"


HEADER = [
    "sticker",
    "states numbers the question does not",
    "cleared the draft's",
    "added such numbers",
    "missing a number the question states",
    "unchanged",
    "malformed",
    "tokens/call (in + out)",
]


def markdown(rows: list[list[str]]) -> str:
    lines = [HEADER, ["---"] * len(HEADER), *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True, help="the OpenAI-compatible server")
    parser.add_argument("--model", default="qwen2.5-coder-1.5b-instruct", help="the served model's name")
    parser.add_argument("--first", type=int, default=100, help="first GSM8K test index (keep >= 100: held out)")
    parser.add_argument("--count", type=int, default=60, help="questions to run")
    args = parser.parse_args()
    if args.first < 100:
        parser.error("--first: test[:100] is the reported set; tune on test[100:] only")
    if args.count < 1:
        parser.error(f"--count: expected an integer >= 1, got {args.count}")

    _, questions = load_dataset("gsm8k")
    done = {json.loads(line)["id"] for line in RECORDS.read_text().splitlines()} if RECORDS.exists() else set()
    model = resolve_model(f"openai:{args.model}", Connection(base_url=args.base_url, timeout=3600))
    context = SiftContext(max_tokens=1024, temperature=0.0)
    for question in questions[args.first : args.first + args.count]:
        if question.id in done:
            continue
        started = time.perf_counter()
        try:
            record = {"id": question.id, **run_question(model, context, question.question)}
        except Exception as error:
            if not is_unreachable(error):
                raise
            # Every finished question is on disk already: rerun to go on.
            raise SystemExit(f"error: cannot reach the model server at {args.base_url}: {error}") from None
        record["seconds"] = round(time.perf_counter() - started, 1)
        with RECORDS.open("a") as out:
            out.write(json.dumps(record) + "\n")
        print(f"{question.id}: {record['seconds']} s", flush=True)

    records = [json.loads(line) for line in RECORDS.read_text().splitlines()]
    print(markdown(summary_rows(records, {question.id: question.question for question in questions})))


if __name__ == "__main__":
    main()
