"""One EdgeD per node name in one podman storage: the machine-wide claim that keeps two of them apart.

EdgeD finds its pods in podman by the node label alone (edge/podlabels.py) and removes those it was not asked
to run. Two EdgeDs serving nodes of the same name on one podman storage (two ``edgehive up`` stacks on one
machine, both ``edge-1``) each take the other's pods for orphans and remove them, for ever, with nothing in
either log but ordinary removals. The second is refused instead: an exclusive ``flock`` on a file named after
the storage (podman's graph root, as podman reports it) and the node, held for the life of the process, so the
kernel lets it go when EdgeD dies, however it dies.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import tempfile
from pathlib import Path
from typing import IO

from edge.errors import EdgeError

CLAIM_DIR = Path(tempfile.gettempdir()) / "edgehive-node-claims"
"""Where the claims live: a directory every EdgeD of the machine can reach (no state survives a reboot here,
and none has to: a lock is only held by a live process)."""


class NodeTaken(EdgeError, RuntimeError):
    """Another live EdgeD serves a node of this name on the same podman storage."""


class NodeClaim:
    """Held while this process serves ``node`` on the podman storage at ``graph_root``."""

    def __init__(self, handle: IO[str], path: Path) -> None:
        self._handle = handle
        self.path = path

    @classmethod
    def take(cls, graph_root: str, node: str, directory: Path = CLAIM_DIR) -> NodeClaim:
        """Claim ``node`` on ``graph_root``; NodeTaken names the holder when another process has it."""
        if not directory.is_dir():
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o1777)  # sticky and open to all, as /tmp: EdgeDs of other users claim here too
        storage = hashlib.sha256(graph_root.encode()).hexdigest()[:16]
        path = directory / f"{storage}-{hashlib.sha256(node.encode()).hexdigest()[:16]}.lock"
        handle = path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                handle.close()
                raise
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise NodeTaken(
                f"node {node!r} is already served by another EdgeD on the podman storage {graph_root} "
                f"({holder}; claim {path}): two would remove each other's pods; give this node another "
                "name or another podman") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}, node {node}\n")
        handle.flush()
        return cls(handle, path)

    def release(self) -> None:
        self._handle.close()  # closing the only descriptor lets the lock go
