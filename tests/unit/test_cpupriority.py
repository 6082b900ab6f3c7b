"""Stream processes give up the CPU first: every thread they have, and every thread they start later."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from runtime.cpupriority import check_nice

CHILD = """
import json, os, threading
from runtime.cpupriority import lower_priority
base = os.getpriority(os.PRIO_PROCESS, 0)
ready = threading.Event(); stop = threading.Event(); tids = []
def work():
    tids.append(threading.get_native_id()); ready.set(); stop.wait()
before = threading.Thread(target=work); before.start(); ready.wait()
lower_priority(7)
ready.clear(); after = threading.Thread(target=work); after.start(); ready.wait()
print(json.dumps({"base": base, "main": os.getpriority(os.PRIO_PROCESS, threading.get_native_id()),
                  "threads": [os.getpriority(os.PRIO_PROCESS, t) for t in tids]}))
stop.set()
"""


def test_every_thread_before_and_after_is_lowered() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(done.stdout)
    want = max(7, seen["base"])  # never raised: a test run under nice 10 stays at 10
    assert (seen["main"], seen["threads"]) == (want, [want, want])


@pytest.mark.parametrize("value", [-1, 20])
def test_a_nice_out_of_range_is_refused_by_name(value: int) -> None:
    with pytest.raises(ValueError, match=f"nice: {value} is not 0"):
        check_nice(value)
