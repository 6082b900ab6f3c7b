"""``python -m edge.dmi``: KubeEdge's device management interface (DMI) for this node's mappers."""

from edge.dmi.settings import MODULE, DmiSettings
from runtime.bus import Bus
from runtime.component import Component, run_component
from schemas.topics import Side


def _component(settings: DmiSettings, bus: Bus) -> Component:
    """The component, imported here and not at the top: the fork server preloads a ``__main__``'s top-level
    imports, and gRPC and protobuf are DMI's alone (edge/dmi/settings.py says why that matters)."""
    from edge.dmi.component import DmiComponent  # noqa: PLC0415 (DMI alone pays for gRPC, after the fork)

    return DmiComponent(settings, bus)


raise SystemExit(run_component(MODULE, Side.EDGE, DmiSettings, _component,
                               description="Serve DeviceManagerService to this node's mappers over gRPC."))
