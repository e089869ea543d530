"""Keep freed tensor memory in the process instead of handing it back to the OS after every pass.

PyTorch's CPU tensors come from glibc ``malloc``. Blocks above glibc's mmap threshold (128 KiB
to 32 MiB, adjusted on the fly) are mapped for each allocation and unmapped on free, so every
forward of a perturbed chunk page-faults its activations in again: on the mini VGG at 48 px
that system time was a third of a channels-last forward (``bench/metrics.py``, BENCHMARKS.md).
Raising the mmap and trim thresholds lets freed activations be reused. The cost: a worker keeps
up to ``trim_threshold`` bytes of freed memory resident.

The CLI does this at start (every ``xaisearch`` process, workers included) unless
``XAISEARCH_KEEP_FREED_MEMORY=0``; scripts using the Python API call ``keep_freed_memory()``.
Other allocators (jemalloc, tcmalloc by ``LD_PRELOAD``) or other C libraries: nothing changes.
"""

from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD = -1  # glibc malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 256 * 2**20
TRIM_THRESHOLD = 512 * 2**20
MMAP_CAP = 32 * 2**20
ENVIRONMENT_SWITCH = "XAISEARCH_KEEP_FREED_MEMORY"


def keep_freed_memory(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Set glibc's mmap and trim thresholds for this process; ``False`` where malloc is not glibc's."""
    for value in (mmap_threshold, trim_threshold):
        if not 0 <= int(value) < 2**31:
            raise ValueError(f"malloc thresholds are bytes in [0, 2 GiB), got {value}")
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter itself is linked against
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # older glibc caps the mmap threshold at 32 MiB on 64-bit and refuses more
    mapped = mallopt(M_MMAP_THRESHOLD, int(mmap_threshold)) or mallopt(
        M_MMAP_THRESHOLD, min(int(mmap_threshold), MMAP_CAP)
    )
    return bool(mapped) and bool(mallopt(M_TRIM_THRESHOLD, int(trim_threshold)))


def keep_freed_memory_unless_disabled() -> bool:
    """``keep_freed_memory()`` unless the environment switch is ``0`` (what the CLI calls at start)."""
    if os.environ.get(ENVIRONMENT_SWITCH, "1").strip().lower() in {"0", "false", "no", "off"}:
        return False
    return keep_freed_memory()
