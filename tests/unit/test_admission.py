"""Pod admission against the node's allocatable, as kubelet admits pods; limits podman cannot enforce."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from edge.edged.admission import Admission, check_limits, pod_requests
from edge.edged.podfields import FieldRefused
from edge.edged.volumeowner import prepare_owner
from runtime.counters import Counters
from runtime.metrics import REFUSED_FIELD, ComponentCollector

NODE = {"cpu": "2", "memory": "1Gi", "pods": "3"}


def spec(*requests: dict[str, str], init: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    containers = [{"name": f"c{i}", "resources": {"requests": r}} for i, r in enumerate(requests)]
    out: dict[str, Any] = {"containers": containers, **extra}
    if init is not None:
        out["initContainers"] = [{"name": "i", "resources": {"limits": init}}]
    return out


def test_pod_requests_sum_containers_max_init_and_overhead() -> None:
    assert pod_requests(spec({"cpu": "250m", "memory": "64Mi"}, {"cpu": "0.5"})) == {"cpu": 750, "memory": 64 << 20}
    assert pod_requests(spec({"cpu": "250m"}, init={"cpu": "1"}, overhead={"cpu": "10m"})) == {"cpu": 1010}
    limits_only = {"containers": [{"name": "c", "resources": {"limits": {"memory": "1Mi"}}}]}
    assert pod_requests(limits_only) == {"memory": 1 << 20}


def test_a_pod_that_does_not_fit_fails_for_good() -> None:
    admission = Admission(lambda: NODE)
    assert admission.admit("a", {"cpu": 1500}, running=False) is None
    rejection = admission.admit("b", {"cpu": 1000, "memory": 1}, running=False)
    assert rejection is not None
    assert rejection.reason == "OutOfcpu"
    assert rejection.message == "Node didn't have enough resource: cpu, requested: 1000, used: 1500, capacity: 2000"
    assert admission.admit("c", {"memory": 2 << 30}, running=False).reason == "OutOfmemory"  # type: ignore[union-attr]
    assert admission.admit("d", {"example.com/gpu": 1}, running=False).reason == "OutOfexample.com/gpu"  # type: ignore[union-attr]
    assert admission.admit("e", {"ephemeral-storage": 1 << 40}, running=False) is None  # the node does not say
    admission.release("a")  # a ended: room again, but b stays rejected, and a is not admitted again
    assert admission.admit("b", {"cpu": 1000}, running=False) == rejection
    assert admission.admit("a", {"cpu": 1500}, running=False) is None
    assert admission.admit("f", {"cpu": 2000}, running=False) is None


def test_running_pods_are_admitted_again_and_pods_are_counted() -> None:
    admission = Admission(lambda: NODE)
    for uid in ("a", "b", "c"):
        assert admission.admit(uid, {"cpu": 2000}, running=True) is None
    rejection = admission.admit("d", {}, running=False)
    assert rejection is not None
    assert rejection.reason == "OutOfpods"


def test_limits_podman_cannot_enforce_are_refused_by_name() -> None:
    check_limits({"containers": [{"name": "c", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]})
    with pytest.raises(FieldRefused, match=r"spec.containers\[1\].resources.limits.ephemeral-storage is not "
                                           "supported on this node: podman cannot cap") as caught:
        check_limits({"containers": [{"name": "a"}, {"name": "c", "resources": {"limits": {"ephemeral-storage":
                                                                                           "1Gi"}}}]})
    assert caught.value.field == "spec.containers[].resources.limits.ephemeral-storage"


def test_fs_group_owns_volume_files(tmp_path: Path) -> None:
    empty = tmp_path / "e"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "f").write_text("x")
    os.chmod(empty / "sub" / "f", 0o600)
    prepare_owner(empty, "emptyDir", 4321)
    assert (empty.stat().st_mode & 0o7777, empty.stat().st_gid) == (0o2777, 4321)
    assert ((empty / "sub").stat().st_mode & 0o2070, (empty / "sub" / "f").stat().st_mode & 0o777) == (0o2070, 0o660)
    assert (empty / "sub" / "f").stat().st_gid == 4321
    config = tmp_path / "c"
    config.mkdir(mode=0o755)
    (config / "k").write_text("v")
    os.chmod(config / "k", 0o400)
    prepare_owner(config, "configMap", 4321)
    assert ((config / "k").stat().st_mode & 0o777, (config / "k").stat().st_gid) == (0o440, 4321)


def test_refused_fields_are_a_metric_by_field() -> None:
    counters = Counters()
    counters.inc(REFUSED_FIELD + "spec.containers[].securityContext.seLinuxOptions", 2)
    registry = CollectorRegistry()
    registry.register(ComponentCollector("edged", "edge-1", counters))
    text = generate_latest(registry).decode()
    assert ('edgehive_pod_fields_refused_total{component="edged",field="spec.containers[].securityContext.'
            'seLinuxOptions",node="edge-1"} 2.0') in text
    assert "event=\"refused_field" not in text
