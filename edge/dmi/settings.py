"""DMI's name and settings, apart from the component: ``python -m edge.dmi`` imports these at its top.

The fork server (``edgehive.forkserver``) preloads what a component's ``__main__`` imports at its top, for every
edge process to share. gRPC and protobuf are DMI's alone, and large (the C core with libstdc++, the protobuf
runtime, the generated API): preloaded, the fork server held them for nobody else. So ``__main__`` takes only this
light module at its top and imports ``edge.dmi.component`` (and with it gRPC) after the fork, in DMI itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runtime.component import ComponentSettings

MODULE = "dmi"
MAX_SOCKET_PATH = 107
"""sun_path holds 108 bytes with its terminating zero."""


@dataclass(frozen=True)
class DmiSettings(ComponentSettings):
    socket: str = field(default="/etc/kubeedge/dmi.sock", metadata={
        "help": "Unix socket of DeviceManagerService (KubeEdge's default path, which mappers dial)"})
    mappers_file: str = field(default="/var/lib/edgehive/dmi-mappers.json", metadata={
        "help": "where registered mappers are kept across restarts"})
    kept_file: str = field(default="", metadata={
        "help": "where refused Device and DeviceModel versions, and the last good ones mappers keep running, are "
                "kept across restarts (default: dmi-kept.json beside mappers_file)"})
    max_message_bytes: int = field(default=1024 * 1024, metadata={
        "help": "largest gRPC message taken from or sent to a mapper"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.socket.startswith("/") or len(self.socket.encode()) > MAX_SOCKET_PATH:
            raise ValueError(f"socket must be an absolute path of at most {MAX_SOCKET_PATH} bytes (a Unix socket's "
                             f"limit), not {self.socket[:200]!r}")
        if self.max_message_bytes < 1024:
            raise ValueError(f"max_message_bytes must be at least 1024, not {self.max_message_bytes}")
