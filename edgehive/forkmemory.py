"""The fork server's memory made ready for forking: what a child would otherwise copy of it, it takes first.

A forked child's private memory is almost all copies of its parent's pages, made on the child's first write to
each. Besides the writes a child cannot avoid (reference counts of the objects it uses), its allocations wrote
into the parent's pages: the free blocks and chunks the imports left between shared objects. Here the parent takes
them for good before it forks, so that children allocate on pages of their own; and it fixes glibc's malloc
thresholds, which the children inherit, so that an idle child gives back what a burst made it allocate, and the
number of its arenas, so that a child's threads do not each keep a heap of their own.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import tempfile
from dataclasses import dataclass


def prepare_for_forks() -> None:
    """Everything below, in order: the small-object allocator's holes, the C heap's, malloc's thresholds and arenas."""
    fill_allocator_holes()
    fill_heap_holes()
    fix_malloc_thresholds()
    limit_malloc_arenas()


_MALLOC_CLASS = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$")
_UNUSED_POOLS = re.compile(r"^(\d+) unused pools \* \d+ bytes")
FILL_ROUNDS = 3
"""The first round also claims the unused pools, the next ones fill them; reading the statistics leaves a few
free blocks of its own each round (the last arena's untouched pools are left alone: a child writing one gets a
new page, not a copy)."""


@dataclass(frozen=True)
class AllocatorHoles:
    """What ``sys._debugmallocstats()`` says is free in the small-object allocator (empty when it is not in use,
    as under ``PYTHONMALLOC=malloc``)."""

    free_blocks: dict[int, int]
    """Free blocks in the pools in use, by block size."""
    unused_pools: int
    """Pools of the arenas that hold no block."""
    largest: int
    """The largest block size (the small-object threshold)."""

    @classmethod
    def parse(cls, stats: str) -> AllocatorHoles:
        free: dict[int, int] = {}
        unused, largest = 0, 0
        for line in stats.splitlines():
            if (row := _MALLOC_CLASS.match(line)) is not None:
                size, avail = int(row.group(2)), int(row.group(5))
                largest = max(largest, size)
                if avail:
                    free[size] = avail
            elif (pools := _UNUSED_POOLS.match(line)) is not None:
                unused = int(pools.group(1))
        return cls(free, unused if largest else 0, largest)

    def requests(self, claim_pools: bool) -> list[tuple[int, int]]:
        """(size, count) allocations that take the free blocks, and with ``claim_pools`` a block of the largest
        size per unused pool (which claims the pool for that size; the next round fills the rest of it)."""
        claims = [(self.largest, self.unused_pools)] if claim_pools and self.unused_pools else []
        return [*self.free_blocks.items(), *claims]


def _malloc_stats() -> str:
    """``sys._debugmallocstats()`` writes to C's stderr: caught through a temporary file on descriptor 2."""
    with tempfile.TemporaryFile() as out:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        return out.read().decode("ascii", "replace")


def fill_allocator_holes() -> int:
    """Take every free block of the small-object allocator's pools, and its unused pools, for good; returns the
    bytes taken.

    After the imports, the allocator's pools hold free blocks scattered over pages that are otherwise full of
    shared objects, and its arenas hold emptied pools on pages already written. A child's first allocations would
    go there, each copying a whole shared page for a few bytes of its own. Taken here, in the parent, they are no
    child's: children allocate in pools and arenas of their own, on pages they fill densely."""
    allocate = ctypes.pythonapi.PyObject_Malloc
    allocate.restype = ctypes.c_void_p
    allocate.argtypes = [ctypes.c_size_t]
    taken = 0
    for round_ in range(FILL_ROUNDS):
        requests = AllocatorHoles.parse(_malloc_stats()).requests(claim_pools=round_ == 0)
        if not requests:
            break
        for size, count in requests:
            for _ in range(count):
                allocate(size)  # never freed: the blocks are the parent's for as long as it lives
            taken += size * count
    return taken


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


HEAP_FILL_SIZES = (1 << 16, 1 << 12, 1 << 10, 512, 256, 128, *range(120, 0, -8))
"""Largest first: glibc gives a request the smallest free chunk that fits, so each size takes the holes it fits
and leaves the smaller ones to the next. All below glibc's threshold for mapping a request apart (128 KiB)."""


def _glibc() -> ctypes.CDLL | None:
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "mallinfo2"):  # not glibc, or one older than 2.33
        return None
    libc.mallinfo2.restype = _MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.sbrk.restype = ctypes.c_void_p
    libc.sbrk.argtypes = [ctypes.c_long]
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return libc


def heap_free_bytes() -> int | None:
    """Bytes in free chunks of the C allocator's heaps, the main heap's top left out; None when it is not glibc's."""
    libc = _glibc()
    if libc is None:
        return None
    info = libc.mallinfo2()
    return int(info.fordblks - info.keepcost)


def fill_heap_holes() -> int:
    """Take the free chunks of the C allocator's main heap for good; returns the bytes taken.

    Python's objects larger than 512 bytes (most dicts' tables, code objects, classes) live in malloc's heap, and
    the imports leave free chunks between them: as with fill_allocator_holes, a child's allocations would land
    there and copy shared pages. Each size is asked for until glibc answers from the heap's top (at or above
    where the top began): then no hole of that size is left, and that last block is given back."""
    libc = _glibc()
    if libc is None:
        return 0
    taken = 0
    for size in HEAP_FILL_SIZES:
        top = (libc.sbrk(0) or 0) - libc.mallinfo2().keepcost
        while (block := libc.malloc(size)) is not None:
            if block >= top:  # the top (or a mapping of its own): no hole left for this size
                libc.free(block)
                break
            taken += size  # never freed: the chunk is the parent's for as long as it lives
    return taken


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
"""mallopt's parameter numbers (malloc.h)."""
MALLOC_THRESHOLD = 128 * 1024
"""glibc's own starting value for both."""


def fix_malloc_thresholds() -> bool:
    """Fix glibc's mmap and trim thresholds at their starting 128 KiB, for this process and the children it forks
    (malloc's parameters are process globals, copied by fork); False when the C library is not glibc.

    Left dynamic, each freed mapped block raises them: later buffers up to its size come from the heap, and the
    heap keeps up to twice that freed at its top, never given back. An idle component's bursts (a relist, a batch
    of pods) would leave it holding their peak. Fixed, a buffer over 128 KiB is mapped and unmapped on its own,
    and a heap's free top over 128 KiB goes back to the system."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MALLOC_THRESHOLD)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, MALLOC_THRESHOLD))


M_ARENA_MAX = -8
"""mallopt's parameter number for the most arenas (malloc.h)."""
MALLOC_ARENAS = 2
"""The main heap, and one arena that every other thread shares."""


def limit_malloc_arenas() -> bool:
    """At most MALLOC_ARENAS of glibc's arenas, for this process and the children it forks; False when the C
    library is not glibc.

    By default glibc gives each new thread that allocates an arena of its own, up to eight per core: a reserved
    64 MiB heap of which the pages it touched stay resident. The components are mostly idle threads (the MQTT
    client's loop, EdgeD's workers, a reporter), and each one held 40-300 KiB in its own arena, about 0.8 MB over
    the node (issue 19's bench footprint). Sharing an arena costs a lock the GIL mostly serialises already."""
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS))
