"""Two PodmanRuntimes of one node name on one real podman service: the second is refused before it touches a pod
(edge/edged/nodeclaim.py), keyed by the storage the service reports; another name is not."""

from __future__ import annotations

import time

import pytest

from edge.edged.nodeclaim import NodeTaken
from edge.edged.runtime import PodmanRuntime
from tests.fixtures.podman import Podman


def test_a_second_edged_of_the_same_node_on_one_podman_is_refused(podman: Podman) -> None:
    node = f"claim-{time.monotonic_ns()}"
    first, second, other = (PodmanRuntime(podman.base_url, n) for n in (node, node, f"{node}-other"))
    try:
        first.claim_node()
        with pytest.raises(NodeTaken) as refused:
            second.claim_node()
        assert podman.root in str(refused.value)
        assert repr(node) in str(refused.value)
        other.claim_node()
        first.claim_node()  # the holder's own claim stands
        first.close()
        second.claim_node()  # free once the holder let go
    finally:
        for runtime in (first, second, other):
            runtime.close()
