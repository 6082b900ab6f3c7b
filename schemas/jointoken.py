"""Join tokens: what ``edgehive gettoken`` prints and ``edgehive join`` presents.

``<ca-hash>.<id>.<expires>.<signature>``: the SHA-256 of the cluster CA certificate
(so the joining node can check, before it trusts anything, that the cloud it reached
holds that CA), a random id (so one token can be revoked), the expiry in Unix seconds,
and an HMAC-SHA256 over the three made with a key that only the cloud holds (so a
token cannot be forged or its expiry moved). KubeEdge's token is the CA hash plus a
signed JWT; this is the same idea in 120 characters without a JWT library.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Collection
from dataclasses import dataclass

from schemas.errors import WireFormatError

_HASH = re.compile(r"^[0-9a-f]{64}$")
_ID = re.compile(r"^[0-9a-f]{16}$")


class TokenError(WireFormatError):
    """A token that must be refused; the message says why and what to do."""


@dataclass(frozen=True)
class JoinToken:
    ca_hash: str
    token_id: str
    expires: int
    signature: str

    def __str__(self) -> str:
        return f"{self.ca_hash}.{self.token_id}.{self.expires}.{self.signature}"

    @property
    def signed_part(self) -> str:
        return f"{self.ca_hash}.{self.token_id}.{self.expires}"

    @classmethod
    def parse(cls, text: str) -> JoinToken:
        parts = text.strip().split(".")
        if len(parts) != 4:
            raise TokenError("malformed token: expected <ca-hash>.<id>.<expires>.<signature>; "
                             "copy the whole line edgehive gettoken printed")
        ca, token_id, expires, signature = parts
        if not _HASH.match(ca) or not _ID.match(token_id) or not expires.isdigit() or not signature:
            raise TokenError("malformed token: a part has the wrong form; copy the whole line gettoken printed")
        return cls(ca, token_id, int(expires), signature)


def _sign(key: bytes, message: str) -> str:
    digest = hmac.new(key, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def issue(key: bytes, ca_hash: str, ttl_s: float, now: float | None = None) -> JoinToken:
    expires = int((time.time() if now is None else now) + ttl_s)
    unsigned = JoinToken(ca_hash, secrets.token_hex(8), expires, "")
    return JoinToken(unsigned.ca_hash, unsigned.token_id, expires, _sign(key, unsigned.signed_part))


def check(token: JoinToken, key: bytes, ca_hash: str, revoked_ids: Collection[str] = (),
          now: float | None = None) -> None:
    """Raise TokenError unless the token was signed with ``key`` for this CA, is unexpired and not revoked."""
    if token.ca_hash != ca_hash:
        raise TokenError("the token was made for another cluster CA; get a token from this cluster "
                         "(edgehive gettoken)")
    if not hmac.compare_digest(token.signature, _sign(key, token.signed_part)):
        raise TokenError("the token's signature does not match: it was altered or forged; get a new one "
                         "(edgehive gettoken)")
    if token.token_id in revoked_ids:
        raise TokenError(f"token {token.token_id} was revoked; get a new one (edgehive gettoken)")
    current = time.time() if now is None else now
    if current >= token.expires:
        ago = int(current - token.expires)
        raise TokenError(f"the token expired {ago} s ago; get a new one (edgehive gettoken --ttl ...)")
