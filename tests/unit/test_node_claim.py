"""The claim that keeps a second EdgeD off a node's pods (edge/edged/nodeclaim.py): one holder per node name and
podman storage, refused naming the holder, free again once the holder lets go."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge.edged.nodeclaim import NodeClaim, NodeTaken


def test_a_second_claim_of_the_same_node_and_storage_is_refused_naming_the_holder(tmp_path: Path) -> None:
    first = NodeClaim.take("/var/lib/containers/storage", "edge-1", tmp_path)
    with pytest.raises(NodeTaken) as refused:
        NodeClaim.take("/var/lib/containers/storage", "edge-1", tmp_path)
    message = str(refused.value)
    assert "'edge-1'" in message
    assert "/var/lib/containers/storage" in message
    assert f"pid {os.getpid()}" in message
    first.release()
    NodeClaim.take("/var/lib/containers/storage", "edge-1", tmp_path).release()


def test_other_nodes_and_other_storages_are_claimed_side_by_side(tmp_path: Path) -> None:
    claims = [NodeClaim.take(root, node, tmp_path) for root in ("/a/storage", "/b/storage")
              for node in ("edge-1", "edge-2")]
    assert len({c.path for c in claims}) == 4
    for claim in claims:
        claim.release()


def test_the_claims_directory_is_made_open_to_every_user(tmp_path: Path) -> None:
    directory = tmp_path / "claims"
    NodeClaim.take("/s", "n", directory).release()
    assert directory.stat().st_mode & 0o7777 == 0o1777
