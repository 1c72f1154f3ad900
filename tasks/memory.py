"""Handing freed heap memory back to the operating system between chunks."""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def release_freed_memory() -> None:
    """Give freed heap pages back to the OS (glibc ``malloc_trim``); a no-op elsewhere.

    Without it, glibc's per-thread arenas (torch, Arrow and GX allocate from several threads) keep
    fragments of every chunk and RSS creeps up with the number of chunks, i.e. with the file size.
    """
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
