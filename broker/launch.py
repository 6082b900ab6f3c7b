"""Start a broker process of either kind with edgehive's rules, and tell when it is ready.

Used by ``edgehive bench`` and by the test fixtures, so both run the brokers exactly
as a deployment would: ``python -m broker`` (amqtt with our plugins) or mosquitto
with the configuration ``edgehive broker --mosquitto-config`` writes, or nats-server
with the one ``--nats-config`` writes.
"""

from __future__ import annotations

import os
import shutil
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


def nats_binary() -> str:
    found = shutil.which("nats-server")
    if found is None:
        raise BrokerMissing("nats-server is not installed: run scripts/setup (or apt-get install nats-server)")
    return found


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
