"""The resource kinds that travel between cloud and edge, and which edge module owns each.

One table, so that EdgeHub's routing, MetaManager's forwarding and EdgeHub's
outbox coalescing agree on what a kind is.
"""

from __future__ import annotations

POD = "pod"
CONFIGMAP = "configmap"
SECRET = "secret"
PVC = "persistentvolumeclaim"
PV = "persistentvolume"
NODE = "node"
NODESTATUS = "nodestatus"
PODSTATUS = "podstatus"
LEASE = "lease"
EVENT = "event"
DEVICE = "device"
DEVICEMODEL = "devicemodel"
MEMBERSHIP = "membership"
TWIN = "twin"
DEVICESTATUS = "devicestatus"
BUSMESSAGE = "busmessage"
"""One message for a node's event bus from the cloud router (schemas/rules.py BusMessage); never stored."""
SERVICEACCOUNTTOKEN = "serviceaccounttoken"
"""Queried, never stored: a node asks the cloud for a pod's bound service account token (schemas/tokens.py)."""

STATE_KINDS = frozenset({NODESTATUS, PODSTATUS, LEASE, DEVICESTATUS})
"""Upstream kinds that describe current state: a newer entry replaces an older unsent one."""

EDGED_KINDS = frozenset({POD, CONFIGMAP, SECRET, PVC, PV, NODE})
"""Stored kinds that EdgeD acts on; MetaManager forwards them to it after each commit."""

DEVICETWIN_KINDS = frozenset({DEVICE, DEVICEMODEL, MEMBERSHIP})
"""Stored kinds that DeviceTwin acts on."""

DMI_KINDS = frozenset({DEVICE, DEVICEMODEL})
"""Stored kinds that the DMI process also hears of: it tells the mappers."""
