"""A mosquitto configuration with the embedded broker's rules, for production.

mosquitto is faster than amqtt and ships in every distribution. Its defaults are
wrong for us in two ways that ENVIRONMENT.md measured: it drops queued messages
for an offline client beyond 1,000, and it saves its store only every 30 minutes.
The delivery protocol recovers from both, but fewer resends are cheaper.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from broker.acl import LinkAcl
from broker.embedded import DEVICE_TOPICS, BrokerSettings
from broker.nativebridge import holds_secret
from runtime.address import Address

# The $SYS listener that broker/mosquitto_sys.py reads. Here, not there: that module is paho's, and writing a
# configuration (the embedded broker's --mosquitto-config) must not load paho into the broker's process.
SYS_INTERVAL_S = 5
"""How often mosquitto publishes $SYS (its default is 10 s)."""


def sys_listener_lines(socket_path: Path, acl_path: Path) -> list[str]:
    """mosquitto.conf lines for the $SYS listener (needs ``per_listener_settings true``)."""
    return [f"\nlistener 0 {socket_path}", "allow_anonymous true", f"acl_file {acl_path}"]


SYS_ACL = "# The metrics socket: mosquitto's own figures, nothing else.\ntopic read $SYS/#\n"

MAX_QUEUED_MESSAGES = 100_000
"""Per offline client; about what an hour of a busy node's traffic needs."""


def mosquitto_conf(settings: BrokerSettings, directory: Path, sys_socket: Path | None = None,
                   bridge_lines: Sequence[str] = ()) -> str:
    """``sys_socket``: also listen there for our metrics reader (broker.mosquitto_sys). ``bridge_lines``: the
    node's link to the cloud (broker/nativebridge.py), last, since each ``connection`` line opens a section."""
    lines = [
        "# Written by 'edgehive broker --mosquitto-config'; reload with SIGHUP after editing passwd or acl.",
        "per_listener_settings false",
        f"persistence true\npersistence_location {directory / 'data'}/\nautosave_interval 60",
        f"max_queued_messages {MAX_QUEUED_MESSAGES}",
        "max_inflight_messages 100",
        "set_tcp_nodelay true",
        "log_dest stderr",
        "log_type error\nlog_type warning\nlog_type notice",
    ]
    security: list[str]
    if settings.client_certs:
        # The certificate is the identity: its CN is the user the ACL's %u patterns see.
        security = ["allow_anonymous false", f"acl_file {directory / 'acl'}"]
    elif settings.password_file:
        security = ["allow_anonymous false", f"password_file {directory / 'passwd'}", f"acl_file {directory / 'acl'}"]
    else:
        security = ["allow_anonymous true"]
    # Devices and the metrics reader have rules of their own on their listeners.
    per_listener = settings.device_listen is not None or sys_socket is not None
    lines[1] = f"per_listener_settings {'true' if per_listener else 'false'}"
    if not per_listener:
        lines += security
    for address in settings.addresses:
        lines.append(f"\nlistener {address.port} {address.host}")
        if per_listener:
            lines += security
        if settings.tls_cert:
            lines += [f"certfile {settings.tls_cert}", f"keyfile {settings.tls_key}"]
            if settings.client_certs:
                lines += [f"cafile {settings.tls_ca}", "require_certificate true", "use_identity_as_username true"]
                if settings.crl_file:
                    lines.append(f"crlfile {settings.crl_file}")
            elif settings.tls_ca:
                lines += [f"cafile {settings.tls_ca}", "require_certificate false"]
    if settings.device_listen is not None:
        device = Address.parse(settings.device_listen)
        lines += [f"\nlistener {device.port} {device.host}", "allow_anonymous false",
                  f"password_file {directory / 'devices'}", f"acl_file {directory / 'device-acl'}"]
        if settings.device_tls_cert:
            lines += [f"certfile {settings.device_tls_cert}", f"keyfile {settings.device_tls_key}"]
    if sys_socket is not None:
        lines += [f"sys_interval {SYS_INTERVAL_S}", *sys_listener_lines(sys_socket, directory / "sys-acl")]
    if bridge_lines:
        lines += ["", *bridge_lines]
    return "\n".join(lines) + "\n"


def write_config(settings: BrokerSettings, directory: Path, sys_socket: Path | None = None,
                 bridge_lines: Sequence[str] = (), preamble: Sequence[str] = ()) -> Path:
    """Write mosquitto.conf, passwd and acl into ``directory``; returns the path of mosquitto.conf.

    The conf is mode 0600 when ``bridge_lines`` hold the cloud password. ``preamble``: global lines put first
    (``user root``), where no listener or bridge section can take them."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "data").mkdir(exist_ok=True)
    if settings.password_file:
        shutil.copyfile(settings.password_file, directory / "passwd")
        (directory / "passwd").chmod(0o600)
    if settings.password_file or settings.client_certs:
        (directory / "acl").write_text(LinkAcl(frozenset(settings.cloud_users)).mosquitto_acl())
    if settings.device_password_file:
        shutil.copyfile(settings.device_password_file, directory / "devices")
        (directory / "devices").chmod(0o600)
        (directory / "device-acl").write_text(
            f"# Devices: KubeEdge's device topics only.\npattern readwrite {DEVICE_TOPICS}#\n")
    if sys_socket is not None:
        (directory / "sys-acl").write_text(SYS_ACL)
    conf = directory / "mosquitto.conf"
    text = "".join(f"{line}\n" for line in preamble) + mosquitto_conf(settings, directory, sys_socket, bridge_lines)
    if holds_secret(bridge_lines):
        conf.touch(mode=0o600)
        conf.chmod(0o600)  # before the secret is in it; touch keeps the mode of a conf that was there
    conf.write_text(text)
    return conf
