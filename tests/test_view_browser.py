"""`sift view` in a real browser: Debian's headless Chromium, driven by playwright,
against `sift view` in its own process on a free loopback port. Screenshots go to
test-artifacts/ (gitignored). Skipped only where chromium is not installed here
(in CI, which installs it, a failure)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sift_graph import SiftContext
from sift_graph.checkpoints import SqliteFileSaver
from sift_graph.graph import build_sift_graph
from sift_graph.testing import QUESTION, ScriptedChatModel

from helpers import EVERY_STAGE, ROOT, sift_process, unavailable, write_toy_result_sets

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts"
WAIT_MS = 20_000

pytestmark = pytest.mark.slow


def chromium() -> str:
    """Debian's Chromium (.ci/run installs it), else the test cannot run (`unavailable`)."""
    if not os.path.exists(CHROMIUM):
        unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    return CHROMIUM


@contextmanager
def sift_view(*args: str, log: Path) -> Iterator[str]:
    """`sift view ARGS` in its own process on a free loopback port; yields its URL."""
    with sift_process("view", *args, log=log, ready="/") as (url, _):
        yield url


@pytest.fixture
def browser():
    executable = chromium()
    from playwright.sync_api import sync_playwright  # the test extra installs it

    with sync_playwright() as playwright:
        chromium_browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield chromium_browser.new_page(viewport={"width": 1280, "height": 900})
        finally:
            chromium_browser.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"view-{name}.png"), full_page=True)


@pytest.fixture
def toy_results(tmp_path):
    """(folder, staged set id, rival set id), written before the browser starts (its
    sync API runs an event loop of its own in this thread)."""
    folder = tmp_path / "results"
    return (folder, *asyncio.run(write_toy_result_sets(folder)))


def test_filter_question_and_compare_pages_in_a_browser(tmp_path, toy_results, browser):
    folder, first, second = toy_results
    with sift_view(str(folder), log=tmp_path / "view.log") as url:
        browse_result_sets(browser, url, first, second)


def browse_result_sets(page, url: str, first: str, second: str) -> None:
    page.goto(f"{url}/sets/{second}")
    page.get_by_role("link", name="SIFT only right (1)").click()
    page.wait_for_url("**outcome=sift_only**")
    assert page.locator("table.questions tr.sift_only").count() == 1
    shot(page, "sift-only")
    page.get_by_role("link", name="q2", exact=True).click()
    page.wait_for_url(f"**/sets/{second}/questions/q2")
    round_2 = page.locator("#round-2")
    assert round_2.locator(".sticker .added").count() > 0 and round_2.locator(".sticker .removed").count() > 0
    predictions = round_2.locator(".prediction h4")
    assert predictions.nth(0).inner_text().startswith("sticker only (P_S): 7")
    assert predictions.nth(1).inner_text().startswith("query + sticker (P_QS): 7")
    assert "CoT baseline: 5" in page.locator("aside.cot").inner_text()
    shot(page, "question")
    page.goto(f"{url}/compare")
    page.locator("select[name=a]").select_option(first)
    page.locator("select[name=b]").select_option(second)
    page.get_by_role("button", name="compare").click()
    page.wait_for_url("**/compare?**")
    assert (
        "3 questions in both; McNemar (exact): 2 first only vs 0 second only" in page.locator(".mcnemar").inner_text()
    )
    shot(page, "compare")


def test_a_run_in_progress_shows_its_new_round_without_a_reload(tmp_path, browser):
    store = tmp_path / "runs.sqlite"
    config = {"configurable": {"thread_id": "live-run"}}
    context = SiftContext(model=ScriptedChatModel(script=EVERY_STAGE))
    with SqliteFileSaver.open(str(store)) as saver:
        # the run stops after each round's consensus check, as if its next calls were under way
        graph = build_sift_graph().compile(checkpointer=saver, interrupt_after=["check_consensus"])
        graph.invoke({"question": QUESTION}, config, context=context)
        with sift_view("--checkpoints", str(store), log=tmp_path / "view.log") as url:
            browser.goto(f"{url}/runs/live-run")
            assert browser.locator("#round-1").count() == 1 and browser.locator("#round-2").count() == 0
            assert "in progress" in browser.locator("h1").inner_text()
            browser.evaluate("window.notReloaded = true")
            graph.invoke(None, config, context=context)  # round 2
            browser.locator("#round-2").wait_for(timeout=WAIT_MS)
            assert browser.evaluate("window.notReloaded === true")
            shot(browser, "live-run")
            browser.goto(f"{url}/runs/live-run/history")
            assert browser.get_by_text("generate_sticker").count() > 0
