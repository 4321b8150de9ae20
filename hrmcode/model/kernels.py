"""Fused C kernels for generation on the CPU, built on first use.

A batch-1 decode step of a small model is dominated by per-op overhead: the 27M HRM applies
24 blocks per token, and each block is ~35 PyTorch ops around its 4 matmuls. ``kernels.c`` has
a float32 block's rotary + KV-cache write + attention, residual + RMSNorm and SwiGLU gate (one
call each, the matmuls left to PyTorch), the int8 matmul of ``DynamicInt8Linear``
(``hrm_qlinear``), and a whole stack of int8 blocks in one call, for new positions of one sequence
(``hrm_stack_q8``) or the next position of each of a batch of sequences (``hrm_stack_q8_rows``).

Guarantees:
- Same math as ``hrmcode.model.layers`` and ``dynamic_int8_reference``: the results differ from
  the PyTorch ops by float rounding (summation order), not by formula; ``hrm_qlinear`` is
  bit-identical. ``tests/model/test_kernels.py`` checks logits and greedy tokens against the
  generic path.
- Built with the system C compiler (``$CC``, else ``cc``; ``-O3 -march=native``) into
  ``<hrmcode cache>/kernels`` (``hrmcode.paths``: ``$HRMCODE_CACHE``, else ``~/.cache/hrmcode``), keyed by the source, the
  compiler and this CPU's flags, written under a temporary name and renamed, so concurrent
  first uses are safe. Later uses only load the library. Which paths compile follows the CPU
  (``isa()``): the int8 matmul uses AVX512-VNNI, else AVX2 (int16 products, ~3x the portable C on
  a Zen core), else portable C, all with the same exact int32 sums; attention and the exp-based
  loops use AVX-512, else AVX2 + FMA + F16C, else portable C.
- Results do not depend on the thread count (``set_threads``): the second thread and the caller
  claim chunks of each matmul (and of a batch's attention) as they come free, each chunk computed
  whole by one of them with the same code, and the int8 sums are exact.
- With no compiler, a failed build, or ``HRMCODE_KERNELS=0``, ``load()`` returns None and the
  models use their generic PyTorch path: slower, never different in kind. A failed build is
  reported once on stderr.
Not guaranteed: bit-identical outputs with the generic path, or any speed-up on float batches or
bfloat16 models (those always take the generic path). A prompt (several new positions at once)
goes through the kernels only when every projection is an int8 layer; float32 models prefill with
PyTorch and decode with the kernels.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import torch

from hrmcode.atomic import staged
from hrmcode.paths import cache_home

SOURCE = Path(__file__).with_name("kernels.c")
ABI_VERSION = 14
MAX_HEAD_DIM = 512  # the C kernels' per-head scratch size

_lock = threading.Lock()
_loaded: "Kernels | None | bool" = False  # False: not tried yet
_why_not = ""  # when load() gave None: why


def cache_dir() -> Path:
    return cache_home() / "kernels"


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "cc"))


def _library_path(compiler: str) -> Path:
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=False).stdout
    key = hashlib.sha256("\0".join((SOURCE.read_text(), compiler, version, _cpu_flags(), platform.machine())).encode())
    return cache_dir() / f"hrmcode-kernels-{key.hexdigest()[:16]}.so"


def _build(compiler: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with staged(target, unique=True) as tmp:  # unique: concurrent first builds each stage their own file
        command = [compiler, "-O3", "-march=native", "-fPIC", "-shared", "-pthread", "-o", str(tmp), str(SOURCE), "-lm"]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(" ".join(done.stderr.split())[:300] or f"{compiler} exited {done.returncode}")


class Q8Linear(ctypes.Structure):
    """``hrm_q8_linear``: one int8 linear layer's tensors, by address."""

    _fields_ = [("weight", ctypes.c_void_p), ("scale", ctypes.c_void_p), ("rowsum", ctypes.c_void_p),
                ("out_features", ctypes.c_int32), ("in_features", ctypes.c_int32)]


class Q8Block(ctypes.Structure):
    """``hrm_q8_block``: the four projections of one block."""

    _fields_ = [("qkv", Q8Linear), ("o", Q8Linear), ("gate_up", Q8Linear), ("down", Q8Linear)]


class Kernels:
    """The loaded library, with argument types declared once (ctypes calls are then ~1 us)."""

    def __init__(self, path: Path):
        lib = ctypes.CDLL(str(path))
        if lib.hrm_kernels_version() != ABI_VERSION:
            raise RuntimeError(f"{path} implements kernel ABI {lib.hrm_kernels_version()}, expected {ABI_VERSION}")
        ptr, i64, i32, f32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_float
        self.rope_attend = lib.hrm_rope_attend
        self.rope_attend.argtypes = [ptr, ptr, ptr, i64, i64, ptr, ptr, i32, i32, ptr, ptr]
        self.rope_attend.restype = None
        self.add_rms_norm = lib.hrm_add_rms_norm
        self.add_rms_norm.argtypes = [ptr, ptr, i32, f32]
        self.add_rms_norm.restype = None
        self.silu_mul = lib.hrm_silu_mul
        self.silu_mul.argtypes = [ptr, ptr, i32]
        self.silu_mul.restype = None
        self.qlinear = lib.hrm_qlinear
        self.qlinear.argtypes = [ptr, i64, i32, ptr, ptr, ptr, i32, ptr, ptr]
        self.qlinear.restype = None
        self._set_threads = lib.hrm_set_threads
        self._set_threads.argtypes = [i32]
        self._set_threads.restype = i32
        self.threads = 1
        self.pack_q8 = lib.hrm_pack_q8
        self.pack_q8.argtypes = [ptr, i32, i32, ptr, ptr]
        self.pack_q8.restype = None
        self.stack_q8 = lib.hrm_stack_q8
        self.stack_q8.argtypes = [ptr, i32, ptr, i32, i32, i32, f32, ptr, ptr, i64, i64, ptr, ptr, ptr, ptr]
        self.stack_q8.restype = None
        self.stack_q8_rows = lib.hrm_stack_q8_rows
        self.stack_q8_rows.argtypes = [ptr, i32, ptr, i32, i32, i32, f32, ptr, ptr, i64, ptr, ptr, ptr, ptr, ptr]
        self.stack_q8_rows.restype = None
        self.path = path

    def set_threads(self, threads: int) -> int:
        """Use 1 or 2 threads for the int8 matmuls; the number now in use."""
        self.threads = self._set_threads(threads)
        return self.threads


def load() -> Kernels | None:
    """The kernels, building them the first time; None when they cannot be had here."""
    global _loaded
    if _loaded is not False:
        return _loaded
    with _lock:
        if _loaded is not False:
            return _loaded
        _loaded = _load()
        return _loaded


def _load() -> Kernels | None:
    global _why_not
    if os.environ.get("HRMCODE_KERNELS", "1") == "0":
        _why_not = "turned off by HRMCODE_KERNELS=0"
        return None
    compiler = _compiler()
    if compiler is None:
        _why_not = f"no C compiler ({os.environ.get('CC', 'cc')} not found)"
        return None  # documented fallback; nothing to report on every run
    try:
        path = _library_path(compiler)
        if not path.is_file():
            _build(compiler, path)
        loaded = Kernels(path)
    except (OSError, RuntimeError, AttributeError) as exc:
        _why_not = f"build failed: {exc}"
        print(f"hrmcode: decode kernels unavailable, using the PyTorch path ({exc})", file=sys.stderr)
        return None
    loaded.set_threads(int(os.environ.get("HRMCODE_KERNEL_THREADS", 0)) or torch.get_num_threads())
    return loaded


def q8_linear(module: torch.nn.Module) -> Q8Linear | None:
    """``module``'s tensors for the int8 kernels, when it is an int8 layer that offers them."""
    offer = getattr(module, "q8_linear", None)
    return None if offer is None else offer()


def status() -> str:
    """One line for ``hrmcode env``: where the kernels are, or why they are not."""
    fused = load()
    if fused is None:
        return f"unavailable, {_why_not}: generation uses the PyTorch path"
    return f"ok ({isa()}), {fused.path}"


def isa() -> str:
    """Which paths this CPU's -march=native build compiles, as kernels.c chooses them: the int8 matmul's, then the
    float loops' (attention, exp)."""
    flags = set(_cpu_flags().split())
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if {"avx2", "fma", "f16c"} <= flags else "portable C"
    matmul = "AVX512-VNNI" if {"avx512f", "avx512_vnni"} <= flags else "AVX2" if "avx2" in flags else "portable C"
    return f"int8 matmul {matmul}, float loops {vector}"


def use_threads(model: torch.nn.Module, threads: int) -> str:
    """Give generation with ``model`` ``threads`` CPU threads; a description of the split.

    When the model's matmuls run in these kernels (int8 layers offering ``q8_linear``), the kernels
    get the threads and PyTorch keeps one: PyTorch's OpenMP workers spin between ops and would
    compete with the kernels' worker for the same cores (measured: prefill 2x slower). Otherwise
    PyTorch gets them all.
    """
    fused = load()
    q8 = fused is not None and any(q8_linear(m) is not None for m in model.modules())
    if q8:
        torch.set_num_threads(1)
        return f"{fused.set_threads(threads)} thread(s): int8 kernels on all, PyTorch ops on the first"
    torch.set_num_threads(threads)
    if fused is not None:
        fused.set_threads(1)
    return f"{threads} thread(s): PyTorch ops"


@contextlib.contextmanager
def threads_for(model: torch.nn.Module, threads: int) -> Iterator[str]:
    """``use_threads`` for the duration of a block (measurements), then the previous split back."""
    fused = load()
    previous = (torch.get_num_threads(), fused.threads if fused is not None else 1)
    try:
        yield use_threads(model, threads)
    finally:
        torch.set_num_threads(previous[0])
        if fused is not None:
            fused.set_threads(previous[1])


def reset() -> None:
    """Forget the loaded state (tests switch ``HRMCODE_KERNELS`` and the cache directory)."""
    global _loaded
    with _lock:
        _loaded = False


def usable(h: torch.Tensor, head_dim: int) -> bool:
    """Whether new positions ``h`` ([1, T, hidden]) of one sequence can go through the kernels."""
    return (h.dtype == torch.float32 and h.device.type == "cpu" and h.shape[0] == 1 and head_dim <= MAX_HEAD_DIM
            and not torch.is_grad_enabled())
