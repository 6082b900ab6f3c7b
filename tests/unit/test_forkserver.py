"""The fork server: requests refused by name, children that are their own processes, exits reported as subprocess
reports them, and a fork server's death taking its children with it. Real forks, real signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgehive.forked import ForkServer, ForkServerError, module_of
from edgehive.forkserver import Request, main_imports
from edgehive.launcher import Child, Supervisor
from tests.fixtures.processes import wait_until

PROBE = "tests.support.forkprobe"
REPO = Path(__file__).resolve().parents[2]


def probe(out: Path, code: str) -> list[str]:
    return [sys.executable, "-m", PROBE, str(out), code]


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[ForkServer]:
    monkeypatch.chdir(REPO)  # python -m tests.support.forkprobe resolves from the repository
    forkserver = ForkServer(["edge.eventbus"], log_file=tmp_path / "forkserver.log")
    yield forkserver
    forkserver.close()


def test_a_request_that_is_not_a_python_m_command_line_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="argv must be a python -m command line"):
        Request.parse(json.dumps({"argv": ["/bin/sh", "-c", "true"], "env": {}, "log": None}))
    with pytest.raises(ValueError, match="not \\['argv', 'cwd'"):
        Request.parse(json.dumps({"argv": ["python", "-m", "x"], "cwd": "/"}))
    with pytest.raises(ValueError, match="env must map strings to strings"):
        Request.parse(json.dumps({"argv": ["python", "-m", "x"], "env": {"A": 1}}))
    with pytest.raises(ValueError, match="not JSON"):
        Request.parse("{")
    request = Request.parse(json.dumps({"argv": ["python", "-m", "edge.edgehub", "--node", "n"], "env": {}}))
    assert (request.module, request.args, request.log) == ("edge.edgehub", ["--node", "n"], None)


def test_preloading_reads_what_a_components_main_imports_without_running_it() -> None:
    imports = main_imports("edge.eventbus")
    assert "edge.eventbus.door" in imports
    assert "runtime.component" in imports
    assert module_of([sys.executable, "-m", "edge.dmi", "--x"]) == "edge.dmi"
    assert module_of(["podman", "system", "service"]) is None


def test_the_fork_server_does_not_preload_dmis_grpc() -> None:
    # gRPC and protobuf are DMI's alone: DMI imports them after the fork (edge/dmi/settings.py says why).
    code = ("import json, sys; from edgehive.forkserver import preload; preload(['edge.dmi']); "
            "print(json.dumps(sorted(sys.modules)))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                                       check=True, timeout=60).stdout)
    assert [m for m in loaded if m.split(".")[0] in ("grpc", "google")] == []
    assert "edge.dmi.settings" in loaded
    assert "edge.dmi.component" not in loaded
    assert "unicodedata" in loaded  # what every child's first connect loads (the idna codec): once, here


def test_the_fork_server_does_not_preload_yaml() -> None:
    # Only a process given a settings file reads YAML (runtime/settings.py); edgehive up gives its edge none.
    components = ",".join(f"'edge.{name}'" for name in ("edgehub", "metamanager", "edged", "devicetwin", "eventbus",
                                                        "dmi", "stream"))
    code = (f"import json, sys; from edgehive.forkserver import preload; preload([{components}]); "
            "print(json.dumps(sorted(sys.modules)))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                                       check=True, timeout=60).stdout)
    assert "edge.edged.component" in loaded
    assert [m for m in loaded if m.split(".")[0] in ("yaml", "_yaml")] == []


def test_a_forked_child_is_its_own_process_with_its_own_environment_title_and_log(
        server: ForkServer, tmp_path: Path) -> None:
    out, log = tmp_path / "probe.json", tmp_path / "probe.log"
    child = server.spawn(probe(out, "7"), {"ONLY": "this"}, log)
    assert child.wait(30) == 7
    seen = json.loads(out.read_text())
    assert seen["pid"] == child.pid
    assert seen["sid"] == child.pid  # its own session, as the supervisor gives every child
    assert seen["env"] == {"ONLY": "this"}  # exactly what was asked, nothing of the fork server's
    assert seen["argv"][1:] == [str(out), "7"]
    assert seen["cmdline"] == " ".join(probe(out, "7"))  # what ps shows
    assert seen["gc_frozen"] > 0  # the preloaded objects are outside the collector's reach
    assert f"probe {child.pid} up" in log.read_text()


def test_a_signal_ends_a_child_as_subprocess_would_report_it(server: ForkServer, tmp_path: Path) -> None:
    out = tmp_path / "probe.json"
    child = server.spawn(probe(out, "wait"), {}, None)
    wait_until(out.exists, timeout=30, what="the probe's output")
    with pytest.raises(subprocess.TimeoutExpired):
        child.wait(0.1)
    assert child.poll() is None
    child.kill()
    assert child.wait(30) == -signal.SIGKILL
    second = server.spawn(probe(tmp_path / "second.json", "wait"), {}, None)
    wait_until((tmp_path / "second.json").exists, timeout=30, what="the second probe's output")
    second.terminate()
    assert second.wait(30) == 0  # its own SIGTERM handler ran


def test_when_the_fork_server_dies_its_children_end_and_the_next_spawn_starts_a_new_one(
        server: ForkServer, tmp_path: Path) -> None:
    out = tmp_path / "probe.json"
    child = server.spawn(probe(out, "wait"), {}, None)
    wait_until(out.exists, timeout=30, what="the probe's output")
    first = server._proc
    assert first is not None
    first.kill()
    assert child.wait(30) is not None  # the kernel's SIGTERM (PDEATHSIG) ended it, and that was reported
    again = server.spawn(probe(tmp_path / "again.json", "3"), {}, None)
    assert again.wait(30) == 3
    assert server._proc is not None
    assert server._proc.pid != first.pid


def test_a_refused_request_raises_and_leaves_the_server_serving(server: ForkServer, tmp_path: Path) -> None:
    with pytest.raises(ForkServerError, match="argv must be a python -m command line"):
        server.spawn(["/bin/true"], {}, None)
    assert server.spawn(probe(tmp_path / "after.json", "0"), {}, None).wait(30) == 0


def test_the_supervisor_restarts_a_forked_child_that_died(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(REPO)
    out = tmp_path / "probe.json"
    forkserver = ForkServer([])
    child = Child("probe", probe(out, "wait"), forked=True)
    supervisor = Supervisor([child], log_dir=tmp_path, forkserver=forkserver, out=open(os.devnull, "w"))  # noqa: SIM115
    supervisor._spawn(child)
    wait_until(out.exists, timeout=30, what="the probe's output")
    first = json.loads(out.read_text())["pid"]
    out.unlink()
    os.kill(first, signal.SIGKILL)

    def restarted() -> bool:
        supervisor._tick()
        return out.exists()

    wait_until(restarted, timeout=30, what="the child restarted")
    assert child.restarts == 1
    assert child.last_exit == -signal.SIGKILL
    assert json.loads(out.read_text())["pid"] != first
    supervisor.stop()
    assert child.proc is not None
    assert child.proc.poll() == 0
    assert forkserver._proc is None or forkserver._proc.poll() is not None  # stopped after its children
