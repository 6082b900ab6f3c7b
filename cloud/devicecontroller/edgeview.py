"""Which changes of a Device a node needs: not the status writes that the node's own reports caused.

Every report a node makes is merged into the Device's status (or its DeviceStatus object), and each such
write is a MODIFIED event with a new resourceVersion. Sent down, it would carry back to the node what the node
itself reported a moment earlier: the whole Device, over the link, into its store, to its DeviceTwin and to
its mapper, once for every status write. A node reads from a Device its metadata and spec; of the status, only
the twins, which it reported itself (DMI hands them to mappers). So a change confined to the status, the
resourceVersion and the managedFields is not sent: the node keeps the version it has, and the next change it
needs brings the whole object, status included, at its newest version.
"""

from __future__ import annotations

from typing import Any

from cloud.packed import Packed

IGNORED_METADATA = ("resourceVersion", "managedFields")


def _edge_part(obj: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in IGNORED_METADATA}
    return {**{k: v for k, v in obj.items() if k not in ("metadata", "status")}, "metadata": meta}


def status_only(before: Packed, after: dict[str, Any]) -> bool:
    """Whether ``after`` differs from ``before`` (as last placed for the nodes) in nothing a node needs."""
    return _edge_part(before.obj()) == _edge_part(after)
