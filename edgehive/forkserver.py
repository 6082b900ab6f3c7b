"""``python -m edgehive.forkserver``: the parent the edge node's components are forked from.

Each edge component is a Python process of about 20 MB, almost all of it what its
imports build (paho, peewee, msgpack, grpc, our own modules): the same pages in every
process. This process imports, once, everything the components' ``__main__`` modules
import, freezes the garbage collector's view of those objects (so that a collection in
a child does not write to every shared page), and then forks one child per request.
Each child is still its own process, with its own session, name, environment and log,
running its component's ``__main__`` as ``python -m`` would; what they share is the
import-time memory, copy-on-write.

It speaks JSON lines on two descriptors the supervisor gives it (``--requests`` and
``--replies``): a request ``{"argv": [...], "env": {...}, "log": path|null}`` is
answered ``{"pid": N}`` in order (or ``{"error": "..."}``); every child that ends is
reported as ``{"exited": N, "code": C}`` (C negative for a signal, as ``subprocess``
says it). It must stay single-threaded: forking a process that runs other threads
would copy locks that those threads hold.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import gc
import importlib
import importlib.util
import json
import os
import runpy
import select
import signal
import sys
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import IO, Any

from setproctitle import setproctitle

from edgehive.deathsig import die_with_parent
from edgehive.forkmemory import prepare_for_forks

EVERY_CHILD_IMPORTS = ("encodings.idna", "_strptime")
"""Imported by children at run time rather than by a ``__main__``: the socket module encodes a host name with the
idna codec (which loads unicodedata) on every client's first connect, and ``time.strptime`` loads _strptime in
EdgeHub and EdgeD. An import after the fork is dear beyond the module: it writes to the import system's shared
state (sys.modules, the finders' caches), copying their pages. Loaded here, once for all."""
REAP_INTERVAL_S = 0.2
"""How often the loop looks for ended children while no request comes (the supervisor ticks at the same rate)."""


def main_imports(module: str) -> list[str]:
    """The modules that ``python -m module`` imports before its component runs: the top-level imports of its
    ``__main__`` (or of the module, within ``if __name__ == "__main__":`` too), ``from X import y`` counting ``X.y``
    when that is a module.

    Read from the source, not run: running it would start the component."""
    spec = importlib.util.find_spec(f"{module}.__main__") if _is_package(module) else importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ValueError(f"no module {module!r} to preload")
    with open(spec.origin, encoding="utf-8") as source:
        tree = ast.parse(source.read(), spec.origin)
    statements = list(tree.body)
    statements += [inner for node in tree.body if isinstance(node, ast.If) for inner in node.body]
    found: list[str] = []
    for node in statements:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            found += [f"{node.module}.{alias.name}" for alias in node.names
                      if _is_module(f"{node.module}.{alias.name}")]
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return found


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # the parent is a module, not a package: y is a name in it
        return False


def _is_package(module: str) -> bool:
    spec = importlib.util.find_spec(module)
    return spec is not None and spec.submodule_search_locations is not None


def preload(modules: Iterable[str]) -> list[str]:
    """Import what each component's ``__main__`` imports; returns what was imported, in order."""
    # No collection while importing: the holes it would leave in the allocator's pools are where a child's first
    # allocations go, and each one written there copies a page that was shared (the gc module's own advice).
    gc.disable()
    done: list[str] = []
    for name in EVERY_CHILD_IMPORTS:
        importlib.import_module(name)
        done.append(name)
    for module in modules:
        for name in main_imports(module):
            if name not in sys.modules:
                importlib.import_module(name)
            done.append(name)
    # Everything allocated so far lives as long as the process: a collection need not look at it, and in a child
    # must not (it would write to, and so copy, every page it visits). Children enable collection again.
    gc.freeze()
    prepare_for_forks()
    return done


def exit_code(status: int) -> int:
    """A wait status as ``subprocess`` reports it: the exit status, or minus the signal that ended the process."""
    return os.waitstatus_to_exitcode(status)


class Server:
    """The fork loop: read requests, fork, report pids and exits."""

    def __init__(self, requests: int, replies: IO[str]) -> None:
        self.requests = requests
        self.replies = replies
        self.children: set[int] = set()
        self._pending = b""

    def serve(self) -> int:
        # The supervisor stops children itself; a terminal's Ctrl-C must not reach us (we run in its session only
        # if started by hand), and SIGTERM ends the loop after the children it started are asked to stop.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, self._on_term)
        while True:
            ready, _, _ = select.select([self.requests], [], [], REAP_INTERVAL_S)
            if ready:
                # Raw reads, split here: a buffered reader could hold a second request that select no longer sees.
                chunk = os.read(self.requests, 65536)
                if not chunk:  # the supervisor is gone: our children follow us (PDEATHSIG)
                    return 0
                *lines, self._pending = (self._pending + chunk).split(b"\n")
                for line in lines:
                    self._answer(line.decode("utf-8", "replace"))
            self._reap()

    def _on_term(self, _signum: int, _frame: object) -> None:
        for pid in self.children:
            _signal(pid, signal.SIGTERM)
        raise SystemExit(0)

    def _answer(self, line: str) -> None:
        try:
            request = Request.parse(line)
        except ValueError as exc:
            self._reply({"error": str(exc)})
            return
        pid = os.fork()
        if pid == 0:
            self._become(request)  # never returns
        self.children.add(pid)
        self._reply({"pid": pid})

    def _become(self, request: Request) -> None:
        code = 1
        try:
            code = run_child(request, close=(self.requests, self.replies.fileno()))
        finally:
            os._exit(code)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            self.children.discard(pid)
            self._reply({"exited": pid, "code": exit_code(status)})

    def _reply(self, message: dict[str, Any]) -> None:
        self.replies.write(json.dumps(message) + "\n")
        self.replies.flush()


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


@dataclass(frozen=True)
class Request:
    """One child to start: ``argv`` as the supervisor would exec it (``python -m module args...``)."""

    argv: list[str]
    env: dict[str, str]
    log: str | None

    @property
    def module(self) -> str:
        return self.argv[self.argv.index("-m") + 1]

    @property
    def args(self) -> list[str]:
        return self.argv[self.argv.index("-m") + 2:]

    @classmethod
    def parse(cls, line: str) -> Request:
        try:
            body = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"request is not JSON: {exc}") from exc
        if not isinstance(body, dict) or set(body) - {"argv", "env", "log"}:
            raise ValueError(f"a request has argv, env and log, not {sorted(body) if isinstance(body, dict) else body}")
        argv, env, log = body.get("argv"), body.get("env", {}), body.get("log")
        if not (isinstance(argv, list) and all(isinstance(a, str) for a in argv) and "-m" in argv[:-1]):
            raise ValueError(f"argv must be a python -m command line, not {argv!r}")
        if not (isinstance(env, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())):
            raise ValueError("env must map strings to strings")
        if log is not None and not isinstance(log, str):
            raise ValueError(f"log must be a path or null, not {log!r}")
        return cls(argv, env, log)


def run_child(request: Request, close: Sequence[int] = ()) -> int:
    """In the forked child: become the component ``request`` names, as ``python -m`` would run it."""
    for fd in close:
        os.close(fd)
    os.setsid()  # its own session, as the supervisor gives every child
    die_with_parent()
    gc.enable()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _redirect(request.log)
    # ps, top and our own benchmarks tell the components apart by their command line. Before the environment is
    # replaced: setproctitle makes room for a long title in the environment's memory, which clearing it takes away.
    setproctitle(" ".join(request.argv))
    os.environ.clear()
    os.environ.update(request.env)
    sys.argv = [request.module, *request.args]
    try:
        runpy.run_module(request.module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except BaseException:
        traceback.print_exc()
        return 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return 0


def _redirect(log: str | None) -> None:
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    if log is not None:
        out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgehive.forkserver", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, required=True, help="descriptor the supervisor writes requests to")
    parser.add_argument("--replies", type=int, required=True, help="descriptor this process answers on")
    parser.add_argument("--preload", default="", help="comma-separated modules whose __main__ imports to load")
    args = parser.parse_args(argv)
    die_with_parent()
    preload([m for m in args.preload.split(",") if m])
    with os.fdopen(args.replies, "w", encoding="utf-8") as replies:
        return Server(args.requests, replies).serve()


if __name__ == "__main__":
    raise SystemExit(main())
