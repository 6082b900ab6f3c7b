"""imagePullSecrets: which credentials a pull uses, matched to the image's registry as kubelet matches them."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from edge.edged.pullsecrets import (
    PullSecretError,
    credentials,
    is_default_registry,
    matches,
    normalise_key,
    secret_keys,
)
from schemas.resource import ResourceKey


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def dockerconfigjson(auths: dict[str, Any]) -> dict[str, Any]:
    return {"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": b64(json.dumps({"auths": auths}))}}


def dockercfg(auths: dict[str, Any]) -> dict[str, Any]:
    return {"type": "kubernetes.io/dockercfg", "data": {".dockercfg": b64(json.dumps(auths))}}


def key(name: str) -> ResourceKey:
    return ResourceKey("ns", "secret", name)


def users(found: Any) -> list[tuple[str, str]]:
    return [(a.username, a.secret) for a in found.candidates]


@pytest.mark.parametrize(("raw", "normalised"), [
    ("https://index.docker.io/v1/", "index.docker.io"),
    ("http://127.0.0.1:5000", "127.0.0.1:5000"),
    ("127.0.0.1:5000/private/", "127.0.0.1:5000/private"),
    ("https://quay.io/v2/team", "quay.io/team"),
    ("registry.local", "registry.local"),
])
def test_registry_keys_lose_scheme_api_version_and_trailing_slash(raw: str, normalised: str) -> None:
    assert normalise_key(raw) == normalised


@pytest.mark.parametrize(("registry", "image", "expected"), [
    ("127.0.0.1:5000", "127.0.0.1:5000/private/busybox:1", True),
    ("127.0.0.1:5000/private", "127.0.0.1:5000/private/busybox:1", True),
    ("127.0.0.1:5000/other", "127.0.0.1:5000/private/busybox:1", False),
    ("127.0.0.1:5001", "127.0.0.1:5000/private/busybox:1", False),  # ports must be equal
    ("127.0.0.1", "127.0.0.1:5000/private/busybox:1", False),  # ... also when the key has none
    ("*.example.com", "eu.example.com/app:1", True),  # a host part may be a glob
    ("*.example.com", "example.com/app:1", False),  # ... that matches one part, not two
    ("quay.io", "docker.io/library/busybox", False),
])
def test_a_key_matches_by_host_parts_port_and_path_prefix(registry: str, image: str, expected: bool) -> None:
    assert matches(registry, image) is expected


def test_the_most_specific_registry_key_is_tried_first_across_secrets() -> None:
    secrets = {
        key("broad"): dockerconfigjson({"https://127.0.0.1:5000": {"username": "broad", "password": "b"}}),
        key("narrow"): dockercfg({"127.0.0.1:5000/private": {"auth": b64("narrow:n")}}),
        key("other"): dockerconfigjson({"quay.io": {"username": "q", "password": "q"}}),
    }
    found = credentials("127.0.0.1:5000/private/busybox:1", list(secrets), secrets.get)
    assert users(found) == [("narrow", "narrow"), ("broad", "broad")]
    assert found.candidates[0].auth_config() == {"username": "narrow", "password": "n"}
    assert credentials("127.0.0.1:5000/public/x:1", list(secrets), secrets.get).candidates[0].username == "broad"
    assert credentials("registry.local/x:1", list(secrets), secrets.get).candidates == ()


def test_auth_wins_over_username_and_password() -> None:
    secret = dockerconfigjson({"r.io": {"username": "u", "password": "p", "auth": b64("real:pass:word")}})
    found = credentials("r.io/app", [key("s")], {key("s"): secret}.get)
    assert found.candidates[0].auth_config() == {"username": "real", "password": "pass:word"}


def test_docker_hub_images_take_the_index_credentials() -> None:
    secret = dockerconfigjson({"https://index.docker.io/v1/": {"username": "hub", "password": "h"}})
    for image in ("busybox", "library/busybox:1", "docker.io/library/busybox"):
        assert is_default_registry(image)
        assert users(credentials(image, [key("hub")], {key("hub"): secret}.get)) == [("hub", "hub")], image
    for image in ("localhost/busybox", "127.0.0.1:5000/busybox", "quay.io/busybox"):
        assert not is_default_registry(image)
        assert credentials(image, [key("hub")], {key("hub"): secret}.get).candidates == ()


def test_missing_unreadable_and_foreign_secrets_are_named_in_the_failure() -> None:
    secrets: dict[ResourceKey, dict[str, Any]] = {
        key("garbled"): {"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": b64("{not json")}},
        key("opaque"): {"type": "Opaque", "data": {"a": b64("b")}},
    }
    found = credentials("r.io/app", [key("absent"), key("garbled"), key("opaque")], secrets.get)
    assert found.candidates == ()
    assert found.missing == ("absent",)
    message = found.explain("failed to pull image: unauthorized")
    assert message.startswith("failed to pull image: unauthorized; ")
    assert 'secret "absent" not found' in message
    assert 'secret "garbled": .dockerconfigjson is not base64-encoded JSON' in message
    assert 'secret "opaque" is of type Opaque' in message


def test_the_fingerprint_changes_when_a_missing_secret_arrives() -> None:
    secrets: dict[ResourceKey, dict[str, Any]] = {}
    before = credentials("r.io/app", [key("s")], secrets.get).fingerprint
    secrets[key("s")] = dockerconfigjson({"r.io": {"username": "u", "password": "p"}})
    after = credentials("r.io/app", [key("s")], secrets.get).fingerprint
    assert before != after
    assert after == credentials("r.io/app", [key("s")], secrets.get).fingerprint


def test_pull_secret_names_are_checked() -> None:
    assert secret_keys({"imagePullSecrets": [{"name": "a"}, {"name": "b"}]}, "ns") == (key("a"), key("b"))
    assert secret_keys({}, "ns") == ()
    with pytest.raises(PullSecretError, match=r"imagePullSecrets\[0\] has no name"):
        secret_keys({"imagePullSecrets": [{}]}, "ns")
    with pytest.raises(PullSecretError, match="is not a Secret name"):
        secret_keys({"imagePullSecrets": [{"name": "Bad_Name"}]}, "ns")
