"""The local engine's pure parts: which dtype a machine gets, and each row's next token."""

from __future__ import annotations

import _thread
import subprocess
import sys
import threading
from concurrent.futures import CancelledError, Future

import pytest
import torch
from transformers import TopPLogitsWarper

from sift_graph.models.devices import cpu_flags, cpu_has_native_bf16, dtype_name
from sift_graph.models.sampling import next_tokens, top_p_filter
from sift_graph.models.token_feed import wait_for

ZEN4 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n\n"
SAPPHIRE_RAPIDS = "flags\t\t: fpu avx512f amx_tile amx_bf16 amx_int8\n"
ZEN3 = "flags\t\t: fpu sse2 avx2 fma\n"


def test_native_bf16_is_read_from_the_cpu_flags():
    assert "avx512_bf16" in cpu_flags(ZEN4)
    assert cpu_has_native_bf16(ZEN4) and cpu_has_native_bf16(SAPPHIRE_RAPIDS)
    assert not cpu_has_native_bf16(ZEN3) and not cpu_has_native_bf16("")


@pytest.mark.parametrize(
    ("setting", "native", "expected"),
    [
        ("auto", True, "bfloat16"),
        ("auto", False, "float32"),
        ("float32", True, "float32"),
        ("bfloat16", False, "bfloat16"),
    ],
)
def test_auto_means_bf16_only_where_the_hardware_has_it(setting, native, expected):
    assert dtype_name(setting, native_bf16=native) == expected


def test_an_unknown_dtype_is_named():
    with pytest.raises(ValueError, match=r"^dtype: expected one of auto, bfloat16, float32, got 'fp16'"):
        dtype_name("fp16", native_bf16=True)


def test_top_p_keeps_what_transformers_keeps():
    torch.manual_seed(0)
    scores = torch.randn(6, 50) * 3
    for top_p in (0.1, 0.5, 0.9):
        ours = top_p_filter(scores, top_p)
        theirs = TopPLogitsWarper(top_p=top_p)(torch.zeros(6, 1, dtype=torch.long), scores.clone())
        assert torch.equal(torch.isinf(ours), torch.isinf(theirs))


def test_each_row_is_decoded_its_own_way():
    torch.manual_seed(0)
    logits = torch.randn(4, 100) * 5
    greedy = logits.argmax(-1)
    decodings = [(0.0, None), (1.0, 1e-9), (0.0, 0.5), (50.0, None)]
    picked = [next_tokens(logits, decodings) for _ in range(20)]
    assert all(tokens[:3].tolist() == greedy[:3].tolist() for tokens in picked)  # greedy, or a nucleus of one
    assert len({int(tokens[3]) for tokens in picked}) > 1  # sampled hot: not always one token


def test_a_sync_wait_interrupted_by_ctrl_c_cancels_its_request():
    future: Future[object] = Future()
    threading.Timer(0.3, _thread.interrupt_main).start()
    with pytest.raises(KeyboardInterrupt):
        wait_for(future)  # type: ignore[arg-type]
    assert future.cancelled()
    with pytest.raises(CancelledError):
        future.result()


def test_a_worker_thread_waiting_on_a_request_does_not_keep_the_process_alive():
    """Ctrl-C in the CLI ends the main thread while graph workers wait on requests: they
    cancel them and let the process exit instead of generating to the token limit."""
    script = (
        "import threading\nfrom concurrent.futures import Future\nfrom sift_graph.models.token_feed import wait_for\n"
        "threading.Thread(target=wait_for, args=(Future(),)).start()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
