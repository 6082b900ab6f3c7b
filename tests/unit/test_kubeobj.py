"""Kubernetes objects as plain maps: the lenient views never raise, the parsers refuse a bad field by its name."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.fields import LENIENT, STRICT, BodyError
from schemas.kubeobj import (
    ConfigObject,
    ObjectMeta,
    Pod,
    condition_states,
    deletion_body,
    meta,
    named,
    node_name,
    spec_of,
    status_of,
)
from schemas.resource import ResourceKey

POD_KEY = ResourceKey("default", "pod", "web")


def pod(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"name": "web", "namespace": "default", "uid": "u-1", "resourceVersion": "7",
                     "labels": {"app": "web"}, "annotations": {"note": "x"},
                     "deletionTimestamp": "2026-01-01T00:00:00Z", "deletionGracePeriodSeconds": 5},
        "spec": {"nodeName": "edge-1", "restartPolicy": "Always", "terminationGracePeriodSeconds": 10,
                 "containers": [{"name": "c", "image": "busybox"}]}}
    for path, value in changes.items():
        *parents, last = path.split("__")
        target = obj
        for part in parents:
            target = target[part]
        target[last] = value
    return obj


def test_object_meta_parses_every_field() -> None:
    found = ObjectMeta.parse(pod()["metadata"])
    assert found == ObjectMeta(name="web", namespace="default", uid="u-1", resource_version="7",
                               labels={"app": "web"}, annotations={"note": "x"},
                               deletion_timestamp="2026-01-01T00:00:00Z", deletion_grace_period_seconds=5)
    assert ObjectMeta.parse(None) == ObjectMeta()


@pytest.mark.parametrize(("field", "value"), [
    ("name", 5), ("namespace", ["a"]), ("uid", {"a": 1}), ("resourceVersion", 7), ("labels", "app=web"),
    ("annotations", [1]), ("deletionTimestamp", 1.5), ("deletionGracePeriodSeconds", "5"),
    ("deletionGracePeriodSeconds", True),
])
def test_object_meta_names_the_bad_field(field: str, value: Any) -> None:
    with pytest.raises(BodyError) as refused:
        ObjectMeta.parse({**pod()["metadata"], field: value})
    assert refused.value.field == f"body.metadata.{field}"
    assert str(refused.value).startswith(f"body.metadata.{field}: must be ")


def test_a_label_value_is_named() -> None:
    with pytest.raises(BodyError) as refused:
        ObjectMeta.parse({"labels": {"app": 5}})
    assert refused.value.field == "body.metadata.labels.app"
    with pytest.raises(BodyError) as refused:
        ObjectMeta.parse({"labels": {b"app": "x"}})
    assert refused.value.field == "body.metadata.labels"


def test_metadata_that_is_not_a_map_is_refused() -> None:
    with pytest.raises(BodyError) as refused:
        ObjectMeta.parse([1], "status.metadata")
    assert refused.value.field == "status.metadata"


def test_views_of_checked_objects_never_raise() -> None:
    assert meta(pod()).uid == "u-1"
    assert meta(pod()).labels == {"app": "web"}
    junks: list[Any] = [None, 5, "x", [], {"metadata": 5}, {"metadata": {"name": 5, "labels": {"a": 1, "b": "c"}}},
                        {"spec": [1], "status": "up"}]
    for junk in junks:
        found = meta(junk)
        assert found.name is None
        assert spec_of(junk) == {}
        assert node_name(junk) is None
        assert condition_states(junk) == {}
    assert meta({"metadata": {"labels": {"a": 1, "b": "c"}}}).labels == {"b": "c"}  # what is of the right shape


def test_spec_status_and_conditions() -> None:
    node = {"status": {"conditions": [{"type": "Ready", "status": "True"}, 5, {"type": "DiskPressure"}]}}
    assert condition_states(node) == {"Ready": "True"}
    assert status_of(node)["conditions"][1] == 5  # the view reads, it does not rewrite
    assert node_name(pod()) == "edge-1"


def test_deletion_body() -> None:
    assert deletion_body(POD_KEY, "u-1") == {"metadata": {"name": "web", "namespace": "default", "uid": "u-1"}}
    assert deletion_body(POD_KEY, None) == {"metadata": {"name": "web", "namespace": "default"}}


def test_named_checks_the_key() -> None:
    body, found = named(pod(), POD_KEY)
    assert found.uid == "u-1"
    assert body is not None
    named({"metadata": {"name": "edge-1"}}, ResourceKey(None, "node", "edge-1"))  # cluster-scoped: any namespace
    for obj, field in ((5, "body"), ({}, "body.metadata.name"), ({"metadata": 5}, "body.metadata"),
                       (pod(metadata__name="other"), "body.metadata.name"),
                       (pod(metadata__namespace="kube-system"), "body.metadata.namespace")):
        with pytest.raises(BodyError) as refused:
            named(obj, POD_KEY)
        assert refused.value.field == field


def test_pod_parses() -> None:
    parsed = Pod.parse(pod(), POD_KEY)
    assert (parsed.meta.uid, parsed.node_name) == ("u-1", "edge-1")
    assert parsed.obj == pod()
    assert Pod.parse(pod(spec=None), POD_KEY).node_name is None  # planning judges a pod without a spec


@pytest.mark.parametrize(("changes", "field"), [
    ({"metadata__uid": None}, "body.metadata.uid"),
    ({"metadata__uid": ""}, "body.metadata.uid"),
    ({"metadata__labels": 5}, "body.metadata.labels"),
    ({"spec": []}, "body.spec"),
    ({"spec__nodeName": 5}, "body.spec.nodeName"),
    ({"spec__terminationGracePeriodSeconds": "30"}, "body.spec.terminationGracePeriodSeconds"),
    ({"spec__restartPolicy": ["Always"]}, "body.spec.restartPolicy"),
    ({"spec__containers": {"c": {}}}, "body.spec.containers"),
    ({"spec__containers": [{"name": "c"}, "d"]}, "body.spec.containers[1]"),
])
def test_pod_names_the_bad_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(BodyError) as refused:
        Pod.parse(pod(**changes), POD_KEY)
    assert refused.value.field == field


def test_config_objects() -> None:
    cm_key, secret_key = ResourceKey("default", "configmap", "cfg"), ResourceKey("default", "secret", "s")
    cm = {"metadata": {"name": "cfg", "namespace": "default"}, "data": {"a": "1"}, "binaryData": {"b": "AA=="}}
    assert ConfigObject.parse(cm, cm_key).obj is cm
    secret = {"metadata": {"name": "s", "namespace": "default"}, "data": {"a": "MQ=="}, "stringData": {"b": "x"}}
    assert ConfigObject.parse(secret, secret_key).meta.name == "s"
    for key, obj, field in ((cm_key, {**cm, "data": {"a": 1}}, "body.data.a"),
                            (cm_key, {**cm, "binaryData": [1]}, "body.binaryData"),
                            (secret_key, {**secret, "data": "x"}, "body.data"),
                            (secret_key, {**secret, "stringData": {"b": None}}, "body.stringData.b"),
                            (cm_key, {**cm, "metadata": {"name": "other", "namespace": "default"}},
                             "body.metadata.name")):
        with pytest.raises(BodyError) as refused:
            ConfigObject.parse(obj, key)
        assert refused.value.field == field


def test_reader_messages_are_bounded_and_never_repr_the_value() -> None:
    deep: Any = None
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(BodyError) as refused:
        STRICT.text(deep, "x" * 1000)
    assert len(str(refused.value)) < 500
    assert "list" in refused.value.reason
    assert LENIENT.text(deep, "x") is None
    assert LENIENT.required_text(None, "x") == ""
    assert LENIENT.mappings([{"a": 1}, 2], "x") == [{"a": 1}]
    with pytest.raises(BodyError, match="missing"):
        STRICT.required_text(None, "x")
