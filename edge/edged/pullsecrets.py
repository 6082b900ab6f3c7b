"""imagePullSecrets: which credentials a pull of an image uses, chosen as kubelet chooses them. No I/O here.

A pod's pull secrets are kubernetes.io/dockerconfigjson Secrets (``.dockerconfigjson``:
``{"auths": {registry: entry}}``) or kubernetes.io/dockercfg ones (``.dockercfg``: the
``{registry: entry}`` map itself). A registry key may carry a scheme and a path
(``https://index.docker.io/v1/``, ``quay.io/team``); it matches an image when the hosts
match part by part (a part may be a glob: ``*.example.com``), the ports are equal, and
its path is a prefix of the image's path. The most specific key is tried first (keys in
reverse order, so ``quay.io/team`` before ``quay.io``); an image with no registry in its
name is Docker Hub's, and takes the ``index.docker.io`` credentials when no key matched.
With credentials that match, the pull uses only those (each in turn); with none, it is
anonymous.

A Secret that is not on the node yet is named in the pull's failure (the pod waits
in ImagePullBackOff and tries again as soon as it arrives: ``fingerprint``); one that
cannot be read fails the pull with the reason, as kubelet's does.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from edge.errors import EdgeError
from schemas.kinds import SECRET
from schemas.resource import ResourceKey

DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"
DOCKER_CFG = "kubernetes.io/dockercfg"
DEFAULT_REGISTRY = "index.docker.io"

Lookup = Callable[[ResourceKey], dict[str, Any] | None]


class PullSecretError(EdgeError, ValueError):
    """``spec.imagePullSecrets`` names something that cannot be a Secret."""


@dataclass(frozen=True)
class RegistryAuth:
    """One set of credentials for a registry, and where it came from."""

    registry: str  # the key as normalised: host[:port][/path]
    username: str
    password: str
    secret: str

    def auth_config(self) -> dict[str, str]:
        """What podman's pull takes (X-Registry-Auth)."""
        return {"username": self.username, "password": self.password}


@dataclass(frozen=True)
class PullCredentials:
    """The credentials for one image's pull, most specific first, and what could not be used."""

    candidates: tuple[RegistryAuth, ...]
    missing: tuple[str, ...] = ()  # secrets not on this node
    unreadable: tuple[str, ...] = ()  # why a secret could not be read: the pull fails with this
    ignored: tuple[str, ...] = ()  # secrets that hold no registry credentials

    @property
    def fingerprint(self) -> tuple[Any, ...]:
        """Changes when the credentials change: a pull in back-off is tried again at once."""
        return self.candidates, self.missing, self.unreadable

    def explain(self, failure: str) -> str:
        """A pull's failure, with what the pod's pull secrets did not provide."""
        notes = [f'imagePullSecrets: secret "{name}" not found' for name in self.missing]
        notes += [f"imagePullSecrets: {reason}" for reason in self.unreadable + self.ignored]
        return "; ".join([failure, *notes])


def secret_keys(spec: dict[str, Any], namespace: str) -> tuple[ResourceKey, ...]:
    """The Secrets ``spec.imagePullSecrets`` names, in order."""
    entries = spec.get("imagePullSecrets") or []
    if not isinstance(entries, list):
        raise PullSecretError("spec.imagePullSecrets must be a list")
    keys: list[ResourceKey] = []
    for index, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            raise PullSecretError(f"spec.imagePullSecrets[{index}] has no name")
        try:
            keys.append(ResourceKey(namespace, SECRET, name))
        except ValueError:
            raise PullSecretError(f"spec.imagePullSecrets[{index}]: {name!r} is not a Secret name") from None
    return tuple(keys)


def credentials(image: str, secrets: Iterable[ResourceKey], lookup: Lookup) -> PullCredentials:
    """The credentials the pod's pull secrets hold for ``image``."""
    keyring: dict[str, list[RegistryAuth]] = {}
    missing: list[str] = []
    unreadable: list[str] = []
    ignored: list[str] = []
    for key in secrets:
        obj = lookup(key)
        if obj is None:
            missing.append(key.name)
            continue
        try:
            entries = registry_entries(obj)
        except ValueError as exc:
            unreadable.append(f'secret "{key.name}": {exc}')
            continue
        if entries is None:
            ignored.append(f'secret "{key.name}" is of type {obj.get("type") or "Opaque"}, not {DOCKER_CONFIG_JSON} '
                           f"or {DOCKER_CFG}: it holds no registry credentials")
            continue
        for registry, (username, password) in entries.items():
            keyring.setdefault(registry, []).append(RegistryAuth(registry, username, password, key.name))
    found = [auth for registry in sorted(keyring, reverse=True) if matches(registry, image)
             for auth in keyring[registry]]
    if not found and is_default_registry(image):
        found = keyring.get(DEFAULT_REGISTRY, [])
    return PullCredentials(tuple(found), tuple(missing), tuple(unreadable), tuple(ignored))


def registry_entries(secret: dict[str, Any]) -> dict[str, tuple[str, str]] | None:
    """registry key (normalised) -> (username, password) of a docker config Secret; None for a Secret of another
    type; ValueError for one that cannot be read."""
    kind = secret.get("type")
    field = {DOCKER_CONFIG_JSON: ".dockerconfigjson", DOCKER_CFG: ".dockercfg"}.get(str(kind))
    if field is None:
        return None
    data = secret.get("data") or {}
    raw = data.get(field)
    if not isinstance(raw, str) or not raw:
        raise ValueError(f"a {kind} Secret must hold {field}")
    try:
        config = json.loads(base64.b64decode(raw, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{field} is not base64-encoded JSON ({exc})") from None
    auths = config.get("auths") if kind == DOCKER_CONFIG_JSON and isinstance(config, dict) else config
    if not isinstance(auths, dict):
        raise ValueError(f"{field} must be a map" + (' with "auths"' if kind == DOCKER_CONFIG_JSON else ""))
    out: dict[str, tuple[str, str]] = {}
    for registry, entry in auths.items():
        if not isinstance(entry, dict):
            raise ValueError(f"{field}: the entry for {registry!r} must be a map")
        out[normalise_key(str(registry))] = _user_and_password(entry, registry)
    return out


def _user_and_password(entry: dict[str, Any], registry: str) -> tuple[str, str]:
    """``auth`` (base64 of ``user:password``) wins over ``username`` and ``password``, as in kubelet."""
    auth = entry.get("auth")
    if auth:
        try:
            user, sep, password = base64.b64decode(str(auth), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError(f"the auth of {registry!r} is not base64") from None
        if not sep:
            raise ValueError(f"the auth of {registry!r} is not user:password")
        return user, password
    return str(entry.get("username") or ""), str(entry.get("password") or "")


def normalise_key(key: str) -> str:
    """``https://host:port/v1/path`` -> ``host:port/path``: no scheme, no /v1/ or /v2/, no trailing slash."""
    for scheme in ("https://", "http://"):
        if key.startswith(scheme):
            key = key[len(scheme):]
            break
    host, slash, path = key.partition("/")
    path = slash + path
    if path.startswith(("/v1/", "/v2/")):
        path = path[3:]
    path = path.rstrip("/")
    return host + path


def _split(schemeless: str) -> tuple[list[str], str, str]:
    """host parts, port, path (with its leading slash)."""
    hostport, slash, path = schemeless.partition("/")
    host, _, port = hostport.partition(":")
    return host.split("."), port, slash + path


def matches(key: str, image: str) -> bool:
    """Whether registry ``key`` (normalised) holds the credentials for ``image`` (kubelet's URLsMatch)."""
    key_parts, key_port, key_path = _split(key)
    image_parts, image_port, image_path = _split(image)
    if key_port != image_port or len(key_parts) != len(image_parts):
        return False
    if not image_path.startswith(key_path):
        return False
    return all(fnmatch.fnmatchcase(part, glob) for glob, part in zip(key_parts, image_parts, strict=True))


def is_default_registry(image: str) -> bool:
    """An image of Docker Hub: no registry host in its name (``busybox``, ``library/busybox``), or docker.io's."""
    first, slash, _ = image.partition("/")
    if not first:
        return False
    if not slash or first in ("docker.io", DEFAULT_REGISTRY):
        return True
    return not any(c in first for c in ".:") and first != "localhost"
