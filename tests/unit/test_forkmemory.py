"""The fork server takes the small-object allocator's free blocks before it forks, so that a child's allocations
go to pages of its own instead of copying shared ones (edgehive/forkmemory.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from edgehive.forkmemory import AllocatorHoles

REPO = Path(__file__).resolve().parents[2]

STATS = """Small block threshold = 512, in 32 size classes.

class   size   num pools   blocks in use  avail blocks
-----   ----   ---------   -------------  ------------
    0     16           1              43           978
    1     32           2             764             0
    2     48           7            2349            31
   31    512           2              31            31

# arenas allocated total           =                    3
# bytes in available blocks        =              283,712
37 unused pools * 16384 bytes      =              606,208
"""


def test_the_statistics_say_which_blocks_are_free_and_how_many_pools_are_unused() -> None:
    holes = AllocatorHoles.parse(STATS)
    assert holes.free_blocks == {16: 978, 48: 31, 512: 31}
    assert (holes.unused_pools, holes.largest) == (37, 512)
    assert holes.requests(claim_pools=True) == [(16, 978), (48, 31), (512, 31), (512, 37)]
    assert holes.requests(claim_pools=False) == [(16, 978), (48, 31), (512, 31)]


def test_without_the_small_object_allocator_there_is_nothing_to_take() -> None:
    holes = AllocatorHoles.parse("")  # what PYTHONMALLOC=malloc makes sys._debugmallocstats() print
    assert holes.requests(claim_pools=True) == []


def test_filling_takes_the_free_blocks_that_freed_objects_left() -> None:
    # In a process of its own: what is taken is never given back.
    code = """
import json
from edgehive.forkmemory import AllocatorHoles, _malloc_stats, fill_allocator_holes
def free_bytes():
    return sum(size * n for size, n in AllocatorHoles.parse(_malloc_stats()).free_blocks.items())
keep = [(i,) for i in range(200_000)]
del keep[::2]  # a hole beside every object left
before = free_bytes()
taken = fill_allocator_holes()
print(json.dumps([before, taken, free_bytes()]))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                         timeout=60).stdout
    before, taken, after = json.loads(out)
    assert before > 1_000_000
    assert taken >= before
    assert after < min(before // 10, 256 * 1024)  # what reading the statistics itself frees, no more


def test_filling_takes_the_free_chunks_of_the_c_heap() -> None:
    code = """
import json
from edgehive.forkmemory import fill_heap_holes, heap_free_bytes
keep = [bytes(700 + i % 300) for i in range(20_000)]  # over 512 bytes: malloc's, not Python's small-object allocator
del keep[::2]
before = heap_free_bytes()
taken = fill_heap_holes()
print(json.dumps([before, taken, heap_free_bytes()]))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                         timeout=60).stdout
    before, taken, after = json.loads(out)
    assert before > 4_000_000
    assert taken >= before * 9 // 10  # chunks are taken whole or split: their headers are not counted as taken
    assert after < 64 * 1024


def test_with_the_thresholds_fixed_a_freed_large_buffer_does_not_move_the_next_one_into_the_heap() -> None:
    code = """
import sys
from edgehive.forkmemory import _glibc, fix_malloc_thresholds
libc = _glibc()
if sys.argv[1] == "fixed":
    assert fix_malloc_thresholds()
libc.free(libc.malloc(300_000))  # mapped on its own; freeing it raises glibc's dynamic threshold above it
before = libc.mallinfo2().hblks  # blocks mapped on their own
block = libc.malloc(300_000)
print(libc.mallinfo2().hblks - before)
"""

    def mapped(mode: str) -> int:
        return int(subprocess.run([sys.executable, "-c", code, mode], cwd=REPO, capture_output=True, text=True,
                                  check=True, timeout=60).stdout)

    assert mapped("dynamic") == 0  # glibc's default: the second buffer came from the heap, which keeps it
    assert mapped("fixed") == 1


def test_with_the_arenas_limited_threads_share_one_instead_of_taking_one_each() -> None:
    code = """
import ctypes, sys, threading
from edgehive.forkmemory import limit_malloc_arenas
if sys.argv[1] == "limited":
    assert limit_malloc_arenas()
held = threading.Barrier(7)
def allocate():
    keep = [bytes(2000) for _ in range(10)]  # over 512 bytes: malloc's, from this thread's arena
    held.wait()
threads = [threading.Thread(target=allocate) for _ in range(6)]
for thread in threads:
    thread.start()
held.wait(timeout=30)
ctypes.CDLL(None).malloc_stats()  # one "Arena N:" section per arena, on C's stderr
for thread in threads:
    thread.join()
"""

    def arenas(mode: str) -> int:
        err = subprocess.run([sys.executable, "-c", code, mode], cwd=REPO, capture_output=True, text=True,
                             check=True, timeout=60).stderr
        return sum(line.startswith("Arena ") for line in err.splitlines())

    assert arenas("default") == 7  # the main heap and one per thread (glibc allows eight per core)
    assert arenas("limited") == 2
