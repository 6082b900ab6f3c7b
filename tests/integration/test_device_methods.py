"""A Device's ``spec.methods`` end to end: valid ones reach the mapper through DMI; one that names a property the
device lacks is never given to the mapper, and the Device gets a Warning Event naming the field."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from edge.mappers.base import DmiClient, MapperIdentity
from tests.fixtures.processes import wait_until
from tests.support import devices
from tests.support.cluster import Cluster, node_names
from tests.support.devices import GROUP, VERSION
from tests.support.dmi import RecordingMapper, dmi_device

VALVE = "valve-1"


@pytest.fixture
def mapper_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mapper-", dir="/tmp"))  # a Unix socket's path must be short
    yield path
    shutil.rmtree(path, ignore_errors=True)


def methods_of(mapper: RecordingMapper, namespace: str) -> list[tuple[str, list[str]]] | None:
    device = mapper.devices.get((namespace, VALVE))
    return None if device is None else [(m.name, list(m.propertyNames)) for m in device.spec.methods]


def warnings_about(cluster: Cluster) -> list[str]:
    events = k8s.CoreV1Api(cluster.api.client).list_namespaced_event(cluster.namespace).items
    return [e.message for e in events if e.involved_object.name == VALVE and e.reason == "InvalidDevice"
            and e.type == "Warning"]


def test_methods_reach_the_mapper_and_a_bad_one_is_refused_by_field(cluster_factory: Any, mapper_dir: Path) -> None:
    (node,) = node_names(1)
    cluster: Cluster = cluster_factory([node])
    edge, _link = cluster.nodes[node]
    edge.start("dmi")
    ns = cluster.namespace
    devices.apply(cluster.api.client, ns, node)  # the model "thermo": setpoint, temperature
    mapper = RecordingMapper(MapperIdentity("modbus-test", "modbus", str(mapper_dir / "modbus.sock")),
                             DmiClient(str(edge.dmi_socket)))
    mapper.start(register_timeout=30)
    try:
        custom = k8s.CustomObjectsApi(cluster.api.client)
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, "devices", dmi_device(VALVE, node, namespace=ns))
        wait_until(lambda: methods_of(mapper, ns) == [("adjust", ["setpoint"])], timeout=60,
                   what="the device's methods at the mapper")

        def set_methods(methods: list[dict[str, Any]]) -> None:
            custom.patch_namespaced_custom_object(GROUP, VERSION, ns, "devices", VALVE, {"spec": {"methods": methods}})

        set_methods([{"name": "adjust", "propertyNames": ["setpoint", "humidity"]}])
        # An empty list is an answer to wait_until, so the probe says None until the Event is there.
        (message,) = wait_until(lambda: warnings_about(cluster) or None, timeout=30,
                                what="the Warning Event on the Device")
        assert "spec.methods[0].propertyNames[1]" in message
        assert "'humidity' is not one of the device's properties (setpoint, temperature)" in message

        set_methods([{"name": "both", "description": "all", "propertyNames": ["setpoint", "temperature"]}])
        wait_until(lambda: methods_of(mapper, ns) == [("both", ["setpoint", "temperature"])], timeout=30,
                   what="the next valid methods at the mapper")
        # Changes reach the node in order: the refused version never reached the mapper.
        assert not [d for d in mapper.received if any("humidity" in m.propertyNames for m in d.spec.methods)]
        assert len(warnings_about(cluster)) == 1
    finally:
        mapper.stop()
