"""An mkdocs hook: the committed results (their write-ups, reports and plots) are pages of
the site where they are, under `results/`, instead of copies in `docs/` that would drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

REPO_ROOT = Path(__file__).resolve().parents[2]
REPO_FILES = ("results/**/*.md", "results/**/*.png")


def on_files(files: Files, config: Any) -> Files:
    for pattern in REPO_FILES:
        for path in sorted(REPO_ROOT.glob(pattern)):
            relative = path.relative_to(REPO_ROOT).as_posix()
            files.append(File(relative, str(REPO_ROOT), config["site_dir"], config["use_directory_urls"]))
    return files
