"""Password hashes, the link ACL and the generated mosquitto configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.acl import LinkAcl
from broker.embedded import BrokerSettings
from broker.mosquitto import write_config
from broker.passwords import PasswordFileError, hash_password, read_password_file, set_password, verify_password
from edgehive.cli import main


def test_hash_verifies_and_matches_mosquitto_passwd() -> None:
    stored = hash_password("s3cret")
    assert verify_password("s3cret", stored)
    assert not verify_password("s3cret!", stored)
    # A line written by mosquitto_passwd 2.0.11 for password "secret".
    mosquitto = ("$7$101$yBAFY1aVNatNklzF$oEwFA4D70ZYOHKF9xnHngsG4dD2UiBmnSv7IjwXUifIt4Gb3w5flvASYBAQU5iT2EHSSRaX"
                 "rt+KehsKv2QVBKA==")
    assert verify_password("secret", mosquitto)
    assert not verify_password("secret", "$6$abc$def")


def test_password_file_round_trip_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    set_password(path, "edge-1", "one")
    set_password(path, "cloud", "two")
    set_password(path, "edge-1", "three")
    users = read_password_file(path)
    assert set(users) == {"edge-1", "cloud"}
    assert verify_password("three", users["edge-1"])
    assert path.stat().st_mode & 0o777 == 0o600
    path.write_text("broken line\n")
    with pytest.raises(PasswordFileError, match="passwd:1"):
        read_password_file(path)
    with pytest.raises(ValueError, match="may not"):
        set_password(tmp_path / "p2", "a:b", "x")


def test_link_acl() -> None:
    acl = LinkAcl(frozenset({"cloud"}))
    assert acl.may_publish("edge-1", "edgehive/link/edge-1/up")
    assert not acl.may_publish("edge-1", "edgehive/link/edge-2/up")
    assert not acl.may_publish("edge-1", "edgehive/link/edge-1/down")
    assert acl.may_subscribe("edge-1", "edgehive/link/edge-1/down")
    assert not acl.may_subscribe("edge-1", "edgehive/link/+/down")
    assert not acl.may_subscribe("edge-1", "#")
    assert acl.may_receive("edge-1", "edgehive/link/edge-1/down")
    assert not acl.may_receive("edge-1", "edgehive/link/edge-2/down")
    assert acl.may_publish("cloud", "edgehive/link/edge-2/down")
    assert acl.may_subscribe("cloud", "#")
    assert not acl.may_publish(None, "edgehive/link/edge-1/up")
    assert not acl.may_publish("Not_A_Node", "edgehive/link/Not_A_Node/up")
    # Stream frames: a node's own stream topics, each in its direction, and no other node's.
    assert acl.may_publish("edge-1", "edgehive/link/edge-1/stream/up")
    assert not acl.may_publish("edge-1", "edgehive/link/edge-2/stream/up")
    assert not acl.may_publish("edge-1", "edgehive/link/edge-1/stream/down")
    # The bridge's hello (CloudHub replicas learn of a node from it): its own only, read by the cloud alone.
    assert acl.may_publish("edge-1", "edgehive/link/edge-1/hello")
    assert not acl.may_publish("edge-1", "edgehive/link/edge-2/hello")
    assert not acl.may_subscribe("edge-1", "edgehive/link/+/hello")
    assert acl.may_subscribe("edge-1", "edgehive/link/edge-1/stream/down")
    assert not acl.may_subscribe("edge-1", "edgehive/link/edge-2/stream/down")
    assert not acl.may_subscribe("edge-1", "edgehive/link/+/stream/down")
    assert acl.may_receive("edge-1", "edgehive/link/edge-1/stream/down")
    assert not acl.may_receive("edge-1", "edgehive/link/edge-2/stream/down")


def test_mosquitto_config_has_the_same_rules(tmp_path: Path) -> None:
    passwd = tmp_path / "users"
    set_password(passwd, "cloud", "x")
    settings = BrokerSettings(listen=("127.0.0.1:8883",), password_file=str(passwd), tls_cert="/c", tls_key="/k")
    conf = write_config(settings, tmp_path / "out")
    text = conf.read_text()
    assert "allow_anonymous false" in text
    assert "listener 8883 127.0.0.1" in text
    assert "certfile /c" in text
    acl = (tmp_path / "out" / "acl").read_text()
    assert "pattern write edgehive/link/%u/up" in acl
    assert "pattern read edgehive/link/%u/down" in acl
    assert "pattern write edgehive/link/%u/stream/up" in acl
    assert "pattern write edgehive/link/%u/hello" in acl
    assert "pattern read edgehive/link/%u/stream/down" in acl
    assert "user cloud\ntopic readwrite #" in acl
    assert (tmp_path / "out" / "passwd").read_text() == passwd.read_text()


def test_cli_writes_mosquitto_config_and_passwords(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    passwd = tmp_path / "passwd"
    assert main(["passwd", str(passwd), "edge-9", "--password", "pw9"]) == 0
    assert verify_password("pw9", read_password_file(passwd)["edge-9"])
    out_dir = tmp_path / "mq"
    assert main(["broker", "--listen", "127.0.0.1:1999", "--password-file", str(passwd),
                 "--mosquitto-config", str(out_dir)]) == 0
    assert f"mosquitto -c {out_dir / 'mosquitto.conf'}" in capsys.readouterr().out
    assert "listener 1999 127.0.0.1" in (out_dir / "mosquitto.conf").read_text()
    assert "pattern write edgehive/link/%u/up" in (out_dir / "acl").read_text()
    assert main(["broker", "--listen", "nonsense"]) == 2
    assert "is not HOST:PORT" in capsys.readouterr().err
