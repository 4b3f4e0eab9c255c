"""Which device and weight dtype a local model runs in.

bf16 halves the bytes that every decoding step streams from memory, so it is the
fastest dtype wherever the hardware computes in it natively: GPUs, and CPUs with
AVX512-BF16 or AMX (decoding SmolLM2-135M measured 24 vs 12 tokens/s fp32 on our
2-core AVX512-BF16 machine). A CPU without native bf16 emulates it, slower than fp32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

DtypeSetting = Literal["auto", "bfloat16", "float32"]
DTYPE_SETTINGS: tuple[DtypeSetting, ...] = ("auto", "bfloat16", "float32")

# x86 flags (as /proc/cpuinfo spells them) of CPUs that compute in bf16 natively.
NATIVE_BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
_CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: str) -> set[str]:
    """The feature flags of the first CPU listed in a /proc/cpuinfo text."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU (or the one a /proc/cpuinfo text describes) has native bf16.
    Where there is no /proc/cpuinfo (macOS, Windows), the answer is no: fp32 is the safe side."""
    if cpuinfo is None:
        try:
            cpuinfo = _CPUINFO.read_text()
        except OSError:
            return False
    return bool(cpu_flags(cpuinfo) & NATIVE_BF16_CPU_FLAGS)


def dtype_name(setting: str, *, native_bf16: bool) -> str:
    """The dtype a setting means on hardware with or without native bf16:
    "bfloat16" or "float32"."""
    if setting not in DTYPE_SETTINGS:
        raise ValueError(f"dtype: expected one of {', '.join(DTYPE_SETTINGS)}, got {setting!r}")
    if setting != "auto":
        return setting
    return "bfloat16" if native_bf16 else "float32"


def load_settings(setting: str) -> dict[str, Any]:
    """`from_pretrained` keyword arguments for this machine: the dtype, and on a GPU
    `device_map="auto"` (the weights spread over the GPUs there are)."""
    import torch

    if torch.cuda.is_available():
        # A GPU before Ampere has no bf16 units: auto means fp32 there.
        name = dtype_name(setting, native_bf16=torch.cuda.is_bf16_supported(including_emulation=False))
        return {"dtype": getattr(torch, name), "device_map": "auto"}
    return {"dtype": getattr(torch, dtype_name(setting, native_bf16=cpu_has_native_bf16()))}
