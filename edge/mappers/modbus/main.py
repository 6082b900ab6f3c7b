"""``edgehive mapper modbus`` (also ``python -m edge.mappers.modbus``): the Modbus mapper as a process of its own.

Settings come as every edgehive process takes them (flags, EDGEHIVE_* environment, ``--config`` YAML), and also
from a KubeEdge mapper's own ``config.yaml`` (``--config-file``, the flag KubeEdge's mapper framework reads), so
that a mapper deployment written for KubeEdge keeps its configuration:

    grpc_server: {socket_path: /etc/kubeedge/modbus.sock}     -> --socket
    common: {name, version, api_version, protocol, address,   -> --name, --version
             edgecore_sock: /etc/kubeedge/dmi.sock,            -> --dmi-socket
             http_port: 7777}                                  -> --api-listen 0.0.0.0:7777

A flag wins over that file. Keys of that file this mapper does not honour (the ``database`` push targets, ...)
are refused by name rather than silently ignored. ``--api-listen`` serves the device-method API
(edge/mappers/methodapi.py): every address on ``http_port`` as KubeEdge's framework binds it, or where the flag
says.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import yaml

from edge.mappers.base import DEFAULT_DMI_SOCKET, DmiClient, MapperIdentity
from edge.mappers.methodserver import MethodServer
from edge.mappers.modbus.mapper import PROTOCOL, ModbusMapper
from edge.mappers.modbus.methods import ModbusMethods
from runtime import logs, settings
from runtime.address import Address
from runtime.component import StopSignal
from runtime.processsettings import ProcessSettings
from runtime.settings import SettingsError

log = logging.getLogger(__name__)

MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the terminating NUL


@dataclass(frozen=True)
class ModbusMapperSettings(ProcessSettings):
    dmi_socket: str = field(default=DEFAULT_DMI_SOCKET, metadata={
        "help": "the edge's DeviceManagerService socket (KubeEdge's common.edgecore_sock)"})
    socket: str = field(default="/etc/kubeedge/modbus.sock", metadata={
        "help": "where this mapper serves DeviceMapperService (KubeEdge's grpc_server.socket_path)"})
    name: str = field(default="modbus-mapper", metadata={"help": "the mapper's name (KubeEdge's common.name)"})
    version: str = field(default="edgehive", metadata={"help": "the version it registers with (common.version)"})
    register_timeout_s: float = field(default=60.0, metadata={
        "help": "how long to keep registering while the edge's DMI does not answer"})
    api_listen: str | None = field(default=None, metadata={
        "help": "serve the device-method API (KubeEdge's /api/v1/devicemethod/..., plain HTTP) on HOST:PORT "
                "(KubeEdge's common.http_port); unset: not served"})

    def __post_init__(self) -> None:
        for flag, path in (("dmi_socket", self.dmi_socket), ("socket", self.socket)):
            if not path.startswith("/") or len(path.encode()) > MAX_SOCKET_PATH:
                raise ValueError(f"{flag} must be an absolute path of at most {MAX_SOCKET_PATH} bytes (a Unix "
                                 f"socket's limit), not {path[:200]!r}")
        if self.dmi_socket == self.socket:
            raise ValueError(f"socket and dmi_socket are both {self.socket}: the mapper needs a socket of its own")
        if not self.name.strip():
            raise ValueError("name must not be empty")
        if self.register_timeout_s <= 0:
            raise ValueError(f"register_timeout_s must be positive, not {self.register_timeout_s}")
        if self.api_listen is not None:
            Address.parse(self.api_listen, any_host=True, what="api_listen")


KUBEEDGE_KEYS = {("grpc_server", "socket_path"): "socket", ("common", "edgecore_sock"): "dmi_socket",
                 ("common", "name"): "name", ("common", "version"): "version", ("common", "http_port"): "api_listen"}
"""KubeEdge mapper config keys and the settings they set."""
KUBEEDGE_INFORMATIVE = {("common", "api_version"), ("common", "address"), ("common", "protocol")}
"""Accepted and checked or not needed: api_version is DMI's (always v1beta1 here), address is the mapper's host
(its socket says where it is), protocol must be modbus."""
KNOWN = ", ".join(sorted(".".join(k) for k in (*KUBEEDGE_KEYS, *KUBEEDGE_INFORMATIVE)))


def kubeedge_config(path: Path) -> dict[str, str]:
    """A KubeEdge mapper ``config.yaml`` as settings (name -> value); SettingsError naming a key not honoured."""
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SettingsError(f"cannot read mapper config {path}: {exc}") from None
    if not isinstance(loaded, Mapping):
        raise SettingsError(f"mapper config {path} must hold a mapping")
    out: dict[str, str] = {}
    for section, body in loaded.items():
        if not isinstance(body, Mapping):
            raise SettingsError(f"mapper config {path}: {section} is not supported by this mapper "
                                f"(known: grpc_server, common)")
        for key, value in body.items():
            where = (str(section), str(key))
            if where == ("common", "http_port"):
                out["api_listen"] = f"0.0.0.0:{value}"
            elif where in KUBEEDGE_KEYS:
                out[KUBEEDGE_KEYS[where]] = str(value)
            elif where == ("common", "protocol"):
                if str(value).lower() != PROTOCOL:
                    raise SettingsError(f"mapper config {path}: common.protocol is {value!r}; this mapper is "
                                        f"{PROTOCOL}'s")
            elif where not in KUBEEDGE_INFORMATIVE:
                raise SettingsError(f"mapper config {path}: {section}.{key} is not supported by this mapper "
                                    f"(known: {KNOWN})")
    return out


def parse(argv: Sequence[str], prog: str = "edgehive mapper modbus") -> ModbusMapperSettings:
    parser = argparse.ArgumentParser(prog=prog, description="Serve Modbus TCP devices to the edge through DMI.")
    settings.add_arguments(parser, ModbusMapperSettings)
    parser.add_argument("--config-file", type=Path, metavar="FILE",
                        help="a KubeEdge mapper config.yaml (grpc_server.socket_path, common.edgecore_sock, ...)")
    args = parser.parse_args(argv)
    try:
        if args.config_file is not None:
            for name, value in kubeedge_config(args.config_file).items():
                if getattr(args, name) is None:
                    setattr(args, name, value)
        return settings.load(ModbusMapperSettings, args)
    except SettingsError as exc:
        parser.error(str(exc))


def run(config: ModbusMapperSettings, stop: StopSignal) -> int:
    identity = MapperIdentity(config.name, PROTOCOL, config.socket, config.version)
    mapper = ModbusMapper(identity, DmiClient(config.dmi_socket))
    try:
        mapper.start(register_timeout=config.register_timeout_s)
    except (grpc.RpcError, OSError) as exc:
        log.error("cannot register with the edge's DMI on %s: %s", config.dmi_socket, exc)
        mapper.stop()
        return 1
    log.info("Modbus mapper %s serves DeviceMapperService on %s", config.name, config.socket)
    api = None
    if config.api_listen is not None:
        try:
            api = MethodServer(ModbusMethods(mapper), config.api_listen).start()
        except OSError as exc:
            log.error("cannot serve the device-method API on %s: %s", config.api_listen, exc)
            mapper.stop()
            return 1
        log.info("device-method API on http://%s/api/v1/devicemethod/", config.api_listen)
    why = stop.wait()
    log.info("stopping (%s)", why)
    if api is not None:
        api.close()
    mapper.stop()
    Path(config.socket).unlink(missing_ok=True)
    return 0


def main(argv: Sequence[str]) -> int:
    config = parse(argv)
    logs.setup("mapper-modbus", config.log_level, config.log_format)
    return run(config, StopSignal().install())


