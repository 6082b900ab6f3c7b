"""Who is asking: the API server's front proxy authenticates the user and says who it is in headers.

The API server's aggregation layer calls an aggregated API with its proxy client certificate
(``--proxy-client-cert-file``), issued by the request-header CA, and names the user it authenticated in
``X-Remote-User``, ``X-Remote-Group`` and ``X-Remote-Extra-*`` (whatever ``--requestheader-*-headers``
say). Those headers are believed only on a connection whose client certificate is that CA's and whose CN is
an allowed name (``--requestheader-allowed-names``; any CN when the list is empty, as the API server does).
The CA, the names and the header names are read from the ConfigMap the API server publishes for aggregated
servers (``kube-system/extension-apiserver-authentication``): the same on the embedded stack and on any
cluster, with no file to copy, as metrics-server does.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from cloud.errors import CloudError
from cloud.kube import Kube, KubeError

log = logging.getLogger(__name__)

CONFIGMAP = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"


class FrontProxyError(CloudError, ValueError):
    """The API server publishes no request-header configuration: its aggregation flags are missing."""


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class FrontProxy:
    ca_pem: str
    allowed_names: frozenset[str]
    username_headers: tuple[str, ...] = ("X-Remote-User",)
    group_headers: tuple[str, ...] = ("X-Remote-Group",)
    extra_prefixes: tuple[str, ...] = ("X-Remote-Extra-",)

    @classmethod
    def from_configmap(cls, data: dict[str, Any]) -> FrontProxy:
        ca = data.get("requestheader-client-ca-file")
        if not ca:
            raise FrontProxyError("the API server publishes no requestheader-client-ca-file in "
                                  "kube-system/extension-apiserver-authentication: start it with "
                                  "--requestheader-client-ca-file and --proxy-client-cert-file")

        def names(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
            raw = data.get(key)
            return tuple(json.loads(raw)) if raw else default

        return cls(str(ca), frozenset(names("requestheader-allowed-names", ())),
                   names("requestheader-username-headers", ("X-Remote-User",)),
                   names("requestheader-group-headers", ("X-Remote-Group",)),
                   names("requestheader-extra-headers-prefix", ("X-Remote-Extra-",)))

    @classmethod
    def read(cls, kube: Kube, wait_s: float = 60.0) -> FrontProxy:
        """The ConfigMap's configuration, waiting up to ``wait_s`` for it to exist: an API server that has just
        started answers before its post-start hook has written it, and that is not an error of ours."""
        deadline = time.monotonic() + wait_s
        waited = False
        while True:
            try:
                return cls.from_configmap(kube.request_json("GET", CONFIGMAP).get("data") or {})
            except KubeError as exc:
                if exc.status != 404 or time.monotonic() >= deadline:
                    raise
                if not waited:
                    log.info("waiting for the API server to publish kube-system/extension-apiserver-authentication")
                    waited = True
                time.sleep(0.5)

    def identify(self, client_cn: str, headers: Message) -> User | None:
        """The user the front proxy names; None unless the client is the front proxy and names someone."""
        if self.allowed_names and client_cn not in self.allowed_names:
            return None
        name = next((value for h in self.username_headers if (value := headers.get(h))), None)
        if not name:
            return None
        groups = tuple(g for h in self.group_headers for g in headers.get_all(h) or [])
        extra: dict[str, list[str]] = {}
        for header, value in headers.items():
            for prefix in self.extra_prefixes:
                if header.lower().startswith(prefix.lower()):
                    extra.setdefault(header[len(prefix):].lower(), []).append(value)
        return User(name, groups, extra)
