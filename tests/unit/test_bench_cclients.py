"""The C load generator's options: the broker's password in files only their owner reads, never on a command line."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from edgehive.bench import cclients
from edgehive.bench.harness import BenchError
from runtime.url import BrokerUrl


def test_the_options_name_the_broker_and_the_user_in_private_files(tmp_path: Path) -> None:
    env = cclients.client_options(tmp_path, BrokerUrl.parse("mqtt://bench:pw%20x@127.0.0.1:18830"))
    config = Path(env["XDG_CONFIG_HOME"])
    assert stat.S_IMODE(config.stat().st_mode) == 0o700
    for name in (cclients.PUB, cclients.SUB):
        path = config / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text().splitlines() == ["-h 127.0.0.1", "-p 18830", "-V mqttv311", "-u bench", "-P pw x"]


def test_no_credentials_no_user_options(tmp_path: Path) -> None:
    env = cclients.client_options(tmp_path, BrokerUrl.parse("mqtt://127.0.0.1:1883"))
    assert (Path(env["XDG_CONFIG_HOME"]) / cclients.PUB).read_text().splitlines() == [
        "-h 127.0.0.1", "-p 1883", "-V mqttv311"]


def test_tls_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match=re.escape("plain MQTT only, not to mqtts://127.0.0.1:8883")):
        cclients.client_options(tmp_path, BrokerUrl.parse("mqtts://127.0.0.1:8883"))


def test_a_line_break_in_a_credential_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="line break"):
        cclients.client_options(tmp_path, BrokerUrl("127.0.0.1", 1883, username="bench", password="pw\n-h evil"))
