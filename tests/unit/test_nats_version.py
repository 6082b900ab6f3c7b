"""The nats-server edgehive runs: found beside our Python first, and refused when older than NATS_MINIMUM."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from broker.launch import NATS_MINIMUM, BrokerMissing, checked_nats, nats_binary, parse_nats_version


def _fake_nats(tmp_path: Path, prints: str) -> str:
    script = tmp_path / "nats-server"
    script.write_text(f"#!/bin/sh\necho '{prints}'\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_version_read_from_its_banner() -> None:
    assert parse_nats_version("nats-server: v2.15.1\n") == (2, 15, 1)
    assert parse_nats_version("nats-server: v2.10.18-beta.1") == (2, 10, 18)
    assert parse_nats_version("something else") == (0,)


def test_debian_2_9_is_refused_with_its_version_named(tmp_path: Path) -> None:
    old = _fake_nats(tmp_path, "nats-server: v2.9.10")
    with pytest.raises(BrokerMissing, match=r"nats-server 2\.9\.10; edgehive needs 2\.11\.3 or newer"):
        checked_nats(old)


def test_a_program_that_is_not_nats_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BrokerMissing, match="of unknown version"):
        checked_nats(_fake_nats(tmp_path, "hello"))


def test_the_minimum_itself_and_newer_are_taken(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    exact = _fake_nats(tmp_path / "a", "nats-server: v" + ".".join(map(str, NATS_MINIMUM)))
    assert checked_nats(exact) == exact
    newer = _fake_nats(tmp_path / "b", "nats-server: v2.15.1")
    assert checked_nats(newer) == newer


def test_setup_installs_a_supported_one() -> None:
    """scripts/setup installs the nats extra beside our Python; that is the one edgehive runs, and new enough."""
    found = nats_binary()
    assert Path(found).parent == Path(sys.executable).parent
    banner = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=10, check=True).stdout
    assert parse_nats_version(banner) >= NATS_MINIMUM
