"""Resource keys: ``<namespace>/<kind>/<name>``, with ``-`` as the namespace of cluster-scoped objects.

Parsed and formatted only here, so that MetaManager's table, CloudHub's queues and
the envelopes always agree on one spelling.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from schemas.errors import WireFormatError
from schemas.names import is_kind, is_namespace, is_object_name

CLUSTER_SCOPE = "-"

_DIGITS = re.compile(r"[0-9]+")


def newer_version(incoming: str, current: str) -> bool:
    """Whether resourceVersion ``incoming`` is newer than ``current``.

    Kubernetes calls them opaque, but etcd's are integers: compared as such when both are, and
    any difference counts as newer otherwise. ASCII digits only: str.isdigit() is also true for
    '²' or '①', which int() refuses with ValueError.
    """
    if _DIGITS.fullmatch(incoming) and _DIGITS.fullmatch(current):
        return int(incoming) > int(current)
    return incoming != current


class ResourceKeyError(WireFormatError):
    """A resource key that does not follow ``<namespace>/<kind>/<name>``."""


@dataclass(frozen=True, slots=True, order=True)
class ResourceKey:
    namespace: str | None
    kind: str
    name: str

    def __post_init__(self) -> None:
        if self.namespace is not None and not is_namespace(self.namespace):
            raise ResourceKeyError(f"namespace {self.namespace!r} is not a DNS-1123 label")
        if not is_kind(self.kind):
            raise ResourceKeyError(f"kind {self.kind!r} must be lower-case letters and digits")
        if not is_object_name(self.name):
            raise ResourceKeyError(f"name {self.name!r} is not a DNS-1123 subdomain")

    @classmethod
    def parse(cls, text: str) -> ResourceKey:
        if not isinstance(text, str):
            raise ResourceKeyError(f"resource key must be a string, not {type(text).__name__}")
        parts = text.split("/")
        if len(parts) != 3:
            raise ResourceKeyError(f"resource key {text!r} is not <namespace>/<kind>/<name>")
        namespace, kind, name = parts
        return cls(None if namespace == CLUSTER_SCOPE else namespace, kind, name)

    @property
    def cluster_scoped(self) -> bool:
        return self.namespace is None

    def __str__(self) -> str:
        return f"{self.namespace or CLUSTER_SCOPE}/{self.kind}/{self.name}"
