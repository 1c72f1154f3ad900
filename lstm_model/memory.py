"""Handing freed heap memory back to the operating system between large steps.

Used between the chunks of a scored file and between the steps of a training run: each frees
hundreds of MB that the allocators would otherwise keep (and count in the process's RSS).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache

import pyarrow as pa


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def release_freed_memory() -> None:
    """Give freed heap pages back to the OS: Arrow's own allocator's, and glibc's (``malloc_trim``).

    Without it, glibc's per-thread arenas (torch, Arrow and GX allocate from several threads) keep
    fragments of every chunk, and Arrow's pool (mimalloc or jemalloc) keeps the pages of the last
    chunk's tables, so RSS creeps up with the number of chunks, i.e. with the file size.
    """
    pa.default_memory_pool().release_unused()
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
