"""Service account tokens for this node's pods: asked of the cloud through the link, kept on disk, rotated.

A ``serviceAccountToken`` projection needs a token bound to its pod, which only the cloud can get
(TokenRequest). The keeper asks for it (``fetch``: a query through EdgeHub), and keeps it in the pod's
own directory (``<data-dir>/pods/<uid>/tokens/``, mode 0600), so that a pod restarted with no link
(its container, EdgeD or the whole node) still gets its token file; the directory goes with the pod.
They are kept here rather than in MetaManager's store: that store mirrors the cloud's objects, written
only by the cloud and reconciled against it at every resync, while a token is no API object; it is
this pod's credential, minted for it, and its life is the pod's on this node.

Rotation is kubelet's: a token older than 80% of its lifetime, or than 24 hours, is asked for again;
until a new one comes the old one is served (expired, too, when the link is down: a pod that restarts
offline must start, and the API server it cannot reach would refuse no token sooner). A token that was
never obtained makes the pod wait (TokenUnavailable), with the reason. ``stamp`` tells the kubelet when
a pod's plan must be made again: a new token to write, or a refresh to try.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edge.edged.projection import TokenUnavailable
from edge.errors import EdgeError
from schemas.tokens import TokenGrant, TokenQuery

log = logging.getLogger(__name__)

REFRESH_FRACTION = 0.8
MAX_AGE_S = 24 * 3600.0
RETRY_S = 10.0
"""After a failed request, how long before the next one for the same token."""


class TokenFetchError(EdgeError, RuntimeError):
    """The cloud could not be asked for a token, or refused it; the message says why."""


Fetch = Callable[[TokenQuery], TokenGrant]
"""Asks the cloud; raises TokenFetchError."""


@dataclass(frozen=True)
class KeptToken:
    token: str
    obtained_at: float
    """This node's clock when the token arrived: rotation is timed on it, so a cloud clock that differs moves
    nothing but the expiry's meaning."""
    expires_at: float


def refresh_due(kept: KeptToken, now: float) -> bool:
    """Kubelet's rule: older than 80% of its lifetime, or than 24 hours."""
    lifetime = max(0.0, kept.expires_at - kept.obtained_at)
    return now >= kept.obtained_at + min(REFRESH_FRACTION * lifetime, MAX_AGE_S)


@dataclass
class _Entry:
    kept: KeptToken | None
    next_try: float = 0.0
    wanted: bool = False  # a refresh is due and the pod's plan is to be made again for it
    error: str = ""


class TokenKeeper:
    def __init__(self, fetch: Fetch, pod_dir: Callable[[str], Path], clock: Callable[[], float] = time.time,
                 retry_s: float = RETRY_S) -> None:
        self.fetch = fetch
        self.pod_dir = pod_dir
        self.clock = clock
        self.retry_s = retry_s
        self._lock = threading.Lock()
        self._entries: dict[str, dict[TokenQuery, _Entry]] = {}  # by pod uid
        self._generation: dict[str, int] = {}

    def token(self, query: TokenQuery, volume: str) -> bytes:
        """The token file's content for ``query`` (projection.TokenSource); raises TokenUnavailable."""
        now = self.clock()
        with self._lock:
            entry = self._entry(query)
            if entry.kept is not None and not refresh_due(entry.kept, now):
                return entry.kept.token.encode()
            if not entry.wanted and now < entry.next_try:
                return self._stale_or_wait(query, entry, volume)
            entry.wanted = False
            entry.next_try = now + self.retry_s  # one request at a time for one token
        try:
            grant = self.fetch(query)
            kept = KeptToken(grant.token, now, grant.expires_at)
            self._save(query, kept)
        except (TokenFetchError, OSError) as exc:
            with self._lock:
                entry.error = str(exc)
                return self._stale_or_wait(query, entry, volume)
        with self._lock:
            entry.kept, entry.error = kept, ""
            self._generation[query.uid] = self._generation.get(query.uid, 0) + 1
        log.info("pod %s/%s: service account token for %s obtained, valid until %s", query.namespace, query.pod,
                 query.service_account, grant.expiration_timestamp)
        return kept.token.encode()

    def _stale_or_wait(self, query: TokenQuery, entry: _Entry, volume: str) -> bytes:
        if entry.kept is None:
            raise TokenUnavailable(f'MountVolume.SetUp failed for volume "{volume}": cannot get a token for service '
                                   f"account {query.namespace}/{query.service_account}: {entry.error}")
        if entry.error:
            expired = " (expired)" if self.clock() >= entry.kept.expires_at else ""
            log.warning("pod %s/%s: keeping its service account token%s; a new one could not be got: %s",
                        query.namespace, query.pod, expired, entry.error)
            entry.error = ""  # said once per failed request
        return entry.kept.token.encode()

    def stamp(self, uid: str) -> int:
        """Changes when the pod's plan must be made again: a token was renewed, or one is due for a try."""
        now = self.clock()
        with self._lock:
            for entry in self._entries.get(uid, {}).values():
                if (entry.kept is not None and refresh_due(entry.kept, now) and now >= entry.next_try
                        and not entry.wanted):
                    entry.wanted = True
                    self._generation[uid] = self._generation.get(uid, 0) + 1
            return self._generation.get(uid, 0)

    def forget(self, uid: str) -> None:
        """The pod is gone from this node (its directory, with the kept tokens, goes with it)."""
        with self._lock:
            self._entries.pop(uid, None)
            self._generation.pop(uid, None)

    # -- on disk -----------------------------------------------------------------------------------

    def _path(self, query: TokenQuery) -> Path:
        digest = hashlib.sha256(json.dumps(query.as_body(), sort_keys=True).encode()).hexdigest()[:24]
        return self.pod_dir(query.uid) / "tokens" / f"{digest}.json"

    def _entry(self, query: TokenQuery) -> _Entry:
        """Under the lock: the entry for ``query``, loaded from disk the first time (after a restart)."""
        entries = self._entries.setdefault(query.uid, {})
        entry = entries.get(query)
        if entry is None:
            entry = entries[query] = _Entry(self._load(query))
        return entry

    def _load(self, query: TokenQuery) -> KeptToken | None:
        path = self._path(query)
        try:
            found = json.loads(path.read_text())
            return KeptToken(str(found["token"]), float(found["obtainedAt"]), float(found["expiresAt"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring the kept token %s: %s", path, exc)
            return None

    def _save(self, query: TokenQuery, kept: KeptToken) -> None:
        """Written whole or not at all (write, then rename), readable by EdgeD alone."""
        path = self._path(query)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w") as out:
                json.dump({"token": kept.token, "obtainedAt": kept.obtained_at, "expiresAt": kept.expires_at}, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
