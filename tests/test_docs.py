"""Every code block of the documentation runs, or says why it does not (issue 25).

The pages: README.md, BENCHMARKS.md and every Markdown file under docs/ and results/ (all
of them are pages of the site). The convention, for whoever writes a page:

- A fenced block runs, unless the line before it is `<!-- no-run: REASON -->` (a reason is
  required: a long model run, a server it needs, pasted output, a diagram).
- `python` blocks of one page run in order in one namespace, as a reader follows them, in
  a fresh folder. A block that names the embedded model (`model="default"`) runs with the
  scripted fake instead (`scripted:<file>`, whose rounds agree at once), so it takes
  milliseconds, not minutes: the pages are about the API, not the model's answers.
- `bash` blocks run line by line (`sift` is this checkout's CLI), in a fresh folder with a
  copy of `results/`; every command must exit 0.
- Any other block (output, a synopsis, a format) cannot run, so it must carry a no-run reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from sift_graph.testing import script_for

ROOT = Path(__file__).resolve().parent.parent
RUNNABLE = ("python", "bash")
NO_RUN = re.compile(r"<!--\s*no-run:\s*(?P<reason>.*?)\s*-->")
FENCE = re.compile(r"^(?P<indent>[ ]*)(?P<fence>```+|~~~+)(?P<lang>[\w+-]*)")
EMBEDDED_MODEL = 'model="default"'


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    no_run: str | None  # the stated reason, or None when the block runs

    def __str__(self) -> str:
        return f"{self.page}:{self.line} ({self.lang or 'no language'})"


def doc_pages() -> list[Path]:
    pages = [ROOT / "README.md", ROOT / "BENCHMARKS.md"]
    pages += sorted((ROOT / "docs").rglob("*.md")) + sorted((ROOT / "results").rglob("*.md"))
    return pages


def blocks_of(path: Path) -> list[Block]:
    """The fenced code blocks of one Markdown page, each with its no-run reason if any."""
    lines = path.read_text(encoding="utf-8").splitlines()
    page = path.relative_to(ROOT).as_posix()
    blocks, index = [], 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        previous = lines[index - 1].strip() if index else ""
        marker = NO_RUN.fullmatch(previous)
        end = index + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        code = "\n".join(line[indent:] for line in lines[index + 1 : end])
        blocks.append(Block(page, index + 1, opening["lang"], code, marker["reason"] if marker else None))
        index = end + 1
    return blocks


ALL_BLOCKS = [block for page in doc_pages() for block in blocks_of(page)]


def runnable(lang: str) -> list[Block]:
    return [block for block in ALL_BLOCKS if block.no_run is None and block.lang == lang]


def test_the_pages_have_blocks_and_the_collector_reads_them():
    # A collector that found nothing would pass every test below vacuously.
    assert len(runnable("python")) >= 5 and len(runnable("bash")) >= 2
    readme = [block for block in ALL_BLOCKS if block.page == "README.md"]
    assert [block.code for block in readme if block.lang == "bash"] == ["scripts/demo", "scripts/test"]


def test_every_block_runs_or_says_why():
    unmarked = [str(block) for block in ALL_BLOCKS if block.no_run is None and block.lang not in RUNNABLE]
    assert not unmarked, f"blocks that cannot run need <!-- no-run: REASON --> before them: {unmarked}"
    empty = [str(block) for block in ALL_BLOCKS if block.no_run == ""]
    assert not empty, f"a no-run marker must say why: {empty}"


@pytest.fixture
def scripted_spec(tmp_path: Path) -> str:
    """The scripted fake as a model spec: every round agrees on 6 at once."""
    path = tmp_path / "model.json"
    path.write_text(json.dumps(script_for(["6"], ["6"], direct="6")), encoding="utf-8")
    return f"scripted:{path}"


PYTHON_PAGES = sorted({block.page for block in runnable("python")})


@pytest.mark.parametrize("page", PYTHON_PAGES)
def test_python_blocks_run(page: str, scripted_spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs:{page}"}
    for block in (block for block in runnable("python") if block.page == page):
        code = block.code.replace(EMBEDDED_MODEL, f"model={scripted_spec!r}")
        try:
            exec(compile(code, str(block), "exec"), namespace)
        except Exception as exc:
            pytest.fail(f"{block} failed: {type(exc).__name__}: {exc}\n{block.code}")


def shell_commands(block: Block) -> list[str]:
    return [line for line in block.code.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.parametrize("block", runnable("bash"), ids=str)
def test_bash_blocks_run(block: Block, tmp_path: Path):
    shutil.copytree(ROOT / "results", tmp_path / "results")
    # `sift` is this checkout's CLI, whatever is on the PATH (CI runs .venv/bin/python -m pytest).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sift").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m sift_graph.cli "$@"\n', encoding="utf-8")
    (bin_dir / "sift").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    for command in shell_commands(block):
        done = subprocess.run(
            ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, f"{block}: `{command}` exited {done.returncode}\n{done.stdout}\n{done.stderr}"


def test_the_readme_links_resolve():
    # The README is not a page of the site (whose strict build checks every link), so its
    # links to the pages, results and images are checked here.
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [target for target in targets if "://" not in target]
    assert local, "the README links to the docs"
    missing = [target for target in local if not (ROOT / target).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"
