"""``python -m tests.support.forkprobe OUT CODE``: a stand-in component for the fork server's tests.

It writes what it sees of itself to OUT (JSON), prints a line to its log, then waits for SIGTERM when CODE is
``wait``, else exits with CODE."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path

out, code = sys.argv[1], sys.argv[2]
Path(out).write_text(json.dumps({
    "argv": sys.argv, "env": dict(os.environ), "pid": os.getpid(), "sid": os.getsid(0),
    "cmdline": Path("/proc/self/cmdline").read_bytes().rstrip(b"\0").decode(),
    "gc_frozen": __import__("gc").get_freeze_count(),
}))
print(f"probe {os.getpid()} up", flush=True)
if code == "wait":
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait(60)
    raise SystemExit(0)
raise SystemExit(int(code))
