"""A node asking the cloud for a pod's service account token, and the cloud's answer.

A pod's ``serviceAccountToken`` projection needs a token bound to that pod (TokenRequest with a
boundObjectRef), which only the cloud can ask the API server for. The node asks with a query
envelope whose resource key is ``<namespace>/serviceaccounttoken/<service account>`` and whose body
is a TokenQuery; the cloud answers with a TokenGrant, or refuses (403) when the pod is not the
node's. Both are parsed once, where they enter (EdgeController, EdgeD), and refused there with the
field named. Keys a body has beyond its fields are ignored, so that a newer sender can add one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

from schemas.fields import STRICT, BodyError
from schemas.kinds import SERVICEACCOUNTTOKEN
from schemas.kubeobj import spec_of
from schemas.resource import ResourceKey
from schemas.timefmt import parse_rfc3339

DEFAULT_SERVICE_ACCOUNT = "default"
DEFAULT_EXPIRATION_S = 3600
"""A serviceAccountToken projection's expiry when it names none (the API server writes it in anyway)."""
MIN_EXPIRATION_S = 600
"""The API server refuses a TokenRequest for less than ten minutes."""
MAX_AUDIENCES = 16
MAX_TOKEN_CHARS = 16384

def pod_service_account(pod: Any) -> str:
    """The pod's service account: the ServiceAccount admission plugin writes ``default`` when none is named;
    without that plugin the field stays empty and the pod runs as ``default`` all the same."""
    spec = spec_of(pod)
    name = spec.get("serviceAccountName") or spec.get("serviceAccount")
    return name if isinstance(name, str) and name else DEFAULT_SERVICE_ACCOUNT


def projection_params(source: Any) -> tuple[tuple[str, ...], int]:
    """(audiences, expirationSeconds) a ``serviceAccountToken`` projection asks for: its ``audience``, if any
    (none: the API server's own audiences), and its expiry."""
    found = source if isinstance(source, dict) else {}
    audience = found.get("audience")
    expiration = found.get("expirationSeconds")
    return ((audience,) if isinstance(audience, str) and audience else (),
            expiration if type(expiration) is int else DEFAULT_EXPIRATION_S)


@dataclass(frozen=True)
class TokenQuery:
    """Which token a node wants: for which pod (namespace, name, uid: the token is bound to that pod and dies
    with it), of which service account, for which audiences (empty: the API server's own) and how long."""

    namespace: str
    pod: str
    uid: str
    service_account: str
    audiences: tuple[str, ...]
    expiration_seconds: int

    def key(self) -> ResourceKey:
        """The query envelope's resource key."""
        return ResourceKey(self.namespace, SERVICEACCOUNTTOKEN, self.service_account)

    @classmethod
    def parse(cls, body: Any) -> Self:
        found = STRICT.body(body)
        names = {}
        for name in ("namespace", "pod", "uid", "serviceAccountName"):
            value = STRICT.required_text(found.get(name), f"body.{name}")
            if not value:
                raise BodyError(f"body.{name}", "must not be empty")
            names[name] = value
        audiences = found.get("audiences")
        if audiences is None:
            audiences = []
        if not isinstance(audiences, list) or len(audiences) > MAX_AUDIENCES:
            raise BodyError("body.audiences", f"must be a list of at most {MAX_AUDIENCES} strings")
        for index, audience in enumerate(audiences):
            if not isinstance(audience, str) or not audience:
                raise BodyError(f"body.audiences[{index}]", "must be a non-empty string")
        expiration = STRICT.integer(found.get("expirationSeconds"), "body.expirationSeconds")
        if expiration is None or expiration < MIN_EXPIRATION_S:
            raise BodyError("body.expirationSeconds", f"must be a whole number of seconds, at least {MIN_EXPIRATION_S}")
        return cls(names["namespace"], names["pod"], names["uid"], names["serviceAccountName"], tuple(audiences),
                   expiration)

    def check_key(self, key: ResourceKey | None) -> None:
        """The envelope's key must name the same namespace and service account as the body."""
        if key != self.key():
            raise BodyError("res", f"must be {self.key()} for this body, not {key}")

    def as_body(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "pod": self.pod, "uid": self.uid,
                "serviceAccountName": self.service_account, "audiences": list(self.audiences),
                "expirationSeconds": self.expiration_seconds}


@dataclass(frozen=True)
class TokenGrant:
    """The cloud's answer: the token (a JWT) and when it expires, as the TokenRequest's status says."""

    token: str
    expiration_timestamp: str

    @property
    def expires_at(self) -> float:
        seconds = parse_rfc3339(self.expiration_timestamp)
        if seconds is None:
            raise BodyError("body.expirationTimestamp", "must be an RFC 3339 time in UTC (like 2026-01-01T00:00:00Z), "
                            f"not {self.expiration_timestamp[:40]!r}")
        return float(int(seconds))  # a metav1.Time, whole seconds: a fraction reads as the second it falls in

    @classmethod
    def parse(cls, body: Any) -> Self:
        found = STRICT.body(body)
        token = STRICT.required_text(found.get("token"), "body.token")
        if not token or len(token) > MAX_TOKEN_CHARS or not token.isascii() or any(c.isspace() for c in token):
            raise BodyError("body.token", f"must be a token of 1 to {MAX_TOKEN_CHARS} printable ASCII characters")
        stamp = STRICT.required_text(found.get("expirationTimestamp"), "body.expirationTimestamp")
        grant = cls(token, stamp)
        grant.expires_at  # noqa: B018 - refused here, where it enters, not where it is first used
        return grant

    def as_body(self) -> dict[str, Any]:
        return {"token": self.token, "expirationTimestamp": self.expiration_timestamp}
