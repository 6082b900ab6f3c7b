"""The Modbus devices a mapper serves: the surface the DMI side calls.

``apply`` a parsed ``DeviceSpec`` (new or changed), ``remove`` one, ``set_desired`` a property's value; events
come back through the callback given at construction, on the devices' own threads (so the callback must be
thread-safe and should not block for long: a slow callback delays that device's next read).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

from edge.mappers.modbus.codec import EncodeError
from edge.mappers.modbus.config import ModbusConfigError
from edge.mappers.modbus.poller import DevicePoller, Emit, encode_desired
from edge.mappers.modbus.spec import DeviceSpec, DeviceState, PropertyError
from runtime.backoff import Backoff


class ModbusDevices:
    def __init__(self, emit: Emit, backoff: Callable[[], Backoff] | None = None) -> None:
        self._emit = emit
        self._backoff = backoff
        self._lock = threading.Lock()
        self._pollers: dict[tuple[str, str], DevicePoller] = {}

    def apply(self, spec: DeviceSpec) -> None:
        """Serve ``spec``: start polling a new device; for a known one, write changed desired values when only
        those changed, else restart its polling with the new settings."""
        with self._lock:
            old = self._pollers.get(spec.key)
            if old is not None and _without_desired(old.spec) == _without_desired(spec):
                self._desire_changes(old, spec)
                old.spec = spec
                return
            poller = DevicePoller(spec, self._emit, self._backoff() if self._backoff else None)
            self._pollers[spec.key] = poller
        if old is not None:
            old.stop()
        for prop in spec.properties:
            if prop.desired is not None:
                self._desire(poller, prop.name, prop.desired, raise_errors=False)
        poller.start()

    def remove(self, namespace: str, name: str) -> None:
        with self._lock:
            poller = self._pollers.pop((namespace, name), None)
        if poller is not None:
            poller.stop()

    def set_desired(self, namespace: str, name: str, prop: str, value: str) -> None:
        """Write ``value`` to the property's registers (as soon as the device is online).

        Raises KeyError for an unknown device or property, ModbusConfigError for a property that cannot be
        written and EncodeError for a value its registers cannot hold; nothing is queued then.
        """
        with self._lock:
            poller = self._pollers.get((namespace, name))
        if poller is None:
            raise KeyError(f"no Modbus device {namespace}/{name}")
        self._desire(poller, prop, value, raise_errors=True)

    def state(self, namespace: str, name: str) -> DeviceState | None:
        with self._lock:
            poller = self._pollers.get((namespace, name))
        return None if poller is None else poller.state

    def devices(self) -> list[DeviceSpec]:
        with self._lock:
            return [p.spec for p in self._pollers.values()]

    def close(self) -> None:
        with self._lock:
            pollers = list(self._pollers.values())
            self._pollers.clear()
        for poller in pollers:
            poller.stop()

    def _desire_changes(self, poller: DevicePoller, spec: DeviceSpec) -> None:
        for prop in spec.properties:
            if prop.desired is not None and prop.desired != poller.spec.property(prop.name).desired:
                self._desire(poller, prop.name, prop.desired, raise_errors=False)

    def _desire(self, poller: DevicePoller, prop: str, value: str, *, raise_errors: bool) -> None:
        try:
            write = encode_desired(poller.spec.property(prop), value)
        except (ModbusConfigError, EncodeError) as exc:
            if raise_errors:
                raise
            # A desired value that arrived with the Device: refuse it where the user will see it, keep polling.
            self._emit(PropertyError(poller.spec.namespace, poller.spec.name, prop, f"desired value: {exc}"))
            return
        poller.desire(write)


def _without_desired(spec: DeviceSpec) -> DeviceSpec:
    return replace(spec, properties=tuple(replace(p, desired=None) for p in spec.properties))
