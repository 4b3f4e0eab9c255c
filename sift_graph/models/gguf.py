"""GGUF files made fast to load: converted once to safetensors, kept in a cache folder.

transformers dequantizes a GGUF file on every load (about 20 s for SmolLM2 on two
cores); the converted folder loads in well under a second.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path


def cache_dir() -> Path:
    """Where converted models are kept: $SIFT_CACHE_DIR, else the XDG cache."""
    if env := os.environ.get("SIFT_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "sift_graph"


def converted_gguf_folder(gguf_path: Path) -> Path:
    """A safetensors copy of a GGUF model, converted on first use. The key covers the
    file's identity, so a replaced file is converted again."""
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_dir() / "converted" / f"{gguf_path.stem}-{key}"
    if (target / "config.json").exists():
        return target

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    # The weights are dequantized now; saving with the GGUF quantizer attached would fail.
    setattr(model, "hf_quantizer", None)  # noqa: B010 - transformers types it as a tensor attribute
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target, then rename: a crash mid-save never leaves a half folder.
    staging = Path(tempfile.mkdtemp(prefix=".converting-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:  # another process finished first; its copy is as good as ours
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
