"""The kubelet's image pull with a pod's pull secrets: back-off while nothing changes, a new try as soon as the
credentials do (a fake runtime: this tests the one method; tests/integration/test_private_registry.py pulls
from a real registry)."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edge.edged.kubelet import Kubelet
from edge.edged.podspec import plan_pod
from edge.edged.podworker import ContainerBook
from edge.edged.runtime import ImagePullError
from edge.edged.volumes import Volumes
from schemas.resource import ResourceKey

IMAGE = "127.0.0.1:5000/private/app:1"
SECRET = ResourceKey("ns", "secret", "regcred")


class Registry:
    """Stands in for podman and a registry that wants user ``u`` with password ``p``."""

    def __init__(self) -> None:
        self.pulls: list[list[dict[str, str]]] = []

    def image_present(self, _image: str) -> bool:
        return False

    def pull(self, image: str, auths: Sequence[Mapping[str, str]] = ()) -> None:
        self.pulls.append([dict(a) for a in auths])
        if {"username": "u", "password": "p"} not in self.pulls[-1]:
            raise ImagePullError(f"failed to pull image {image!r}: unauthorized: authentication required")


def secret(password: str) -> dict[str, Any]:
    config = {"auths": {"127.0.0.1:5000": {"username": "u", "password": password}}}
    return {"metadata": {"name": "regcred", "namespace": "ns"}, "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()}}


def test_back_off_holds_until_the_pull_secret_arrives(tmp_path: Path) -> None:
    registry = Registry()
    kubelet = Kubelet("edge-1", registry, Volumes(tmp_path), lambda *_: None, host_ip="127.0.0.1")  # type: ignore[arg-type]
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
           "spec": {"imagePullSecrets": [{"name": "regcred"}], "containers": [{"name": "main", "image": IMAGE}]}}
    plan = plan_pod(pod, "edge-1", lambda _key: None)
    container, book = plan.containers[0], ContainerBook()

    assert not kubelet.containers.image_ready(plan, container, book, 100.0)
    assert book.waiting_reason == "ErrImagePull"
    assert book.waiting_message == (f"failed to pull image {IMAGE!r}: unauthorized: authentication required; "
                                    'imagePullSecrets: secret "regcred" not found')
    assert not kubelet.containers.image_ready(plan, container, book, 101.0)  # in back-off: no pull
    assert book.waiting_reason == "ImagePullBackOff"
    assert 'secret "regcred" not found' in book.waiting_message
    assert len(registry.pulls) == 1

    kubelet.set_config(SECRET, secret("wrong"))  # new credentials: tried at once, and refused
    assert not kubelet.containers.image_ready(plan, container, book, 102.0)
    assert registry.pulls[-1] == [{"username": "u", "password": "wrong"}]
    assert book.waiting_reason == "ErrImagePull"
    assert book.waiting_message.endswith("unauthorized: authentication required")
    assert not kubelet.containers.image_ready(plan, container, book, 103.0)
    assert len(registry.pulls) == 2

    kubelet.set_config(SECRET, secret("p"))
    assert kubelet.containers.image_ready(plan, container, book, 104.0)
    assert registry.pulls[-1] == [{"username": "u", "password": "p"}]
