"""The pieces behind the containers: the health file's verdicts and broker users from the environment."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgehive.services import parse_users
from runtime.healthfile import HealthFile, check
from tests.fixtures.processes import wait_until


def test_health_file_verdicts(tmp_path: Path) -> None:
    path = tmp_path / "health"
    assert "does not exist" in check(path).reason
    writer = HealthFile(path, "edgehub", refresh_s=0.05)
    assert not check(path).healthy  # starting
    writer.set("up")
    assert check(path).healthy
    assert not check(path, now=time.time() + 120).healthy  # stale: the writer hung
    writer.set("down", reason="broker unreachable")
    verdict = check(path)
    assert not verdict.healthy
    assert "broker unreachable" in verdict.reason
    writer.close()
    assert json.loads(path.read_text())["state"] == "stopped"
    record = json.loads(path.read_text())
    record.update(state="up", pid=2**22 + 12345)
    path.write_text(json.dumps(record))
    assert "gone" in check(path).reason
    path.write_text("{not json")
    assert "unreadable" in check(path).reason


def test_probe_drives_the_state(tmp_path: Path) -> None:
    path = tmp_path / "health"
    answers: Iterator[tuple[str, dict[str, object]]] = iter([("down", {"reason": "port 1883 refused"}), ("up", {})])
    last: list[tuple[str, dict[str, object]]] = []

    def probe() -> tuple[str, dict[str, object]]:
        last.append(next(answers, last[-1] if last else ("up", {})))
        return last[-1]

    writer = HealthFile(path, "broker", refresh_s=0.02, probe=probe)
    wait_until(lambda: check(path).healthy, timeout=5, what="the probe's up in the health file")
    assert ("down", {"reason": "port 1883 refused"}) in last
    writer.close()


def test_no_path_writes_nothing(tmp_path: Path) -> None:
    writer = HealthFile(None, "cloudhub")
    writer.set("up")
    writer.close()
    assert list(tmp_path.iterdir()) == []


def test_broker_users_from_the_environment() -> None:
    assert parse_users("cloud:pw1, edge-1:p:w2\nedge-2:x") == {"cloud": "pw1", "edge-1": "p:w2", "edge-2": "x"}
    assert parse_users("") == {}
    with pytest.raises(ValueError, match="'edge-1'"):
        parse_users("cloud:pw edge-1")
    with pytest.raises(ValueError, match="USER:PASSWORD"):
        parse_users(":nopass")
