"""Resource keys and topics: one spelling, and no name that could become a wildcard."""

import pytest

from schemas import topics
from schemas.resource import ResourceKey, ResourceKeyError


def test_resource_key_round_trip() -> None:
    assert str(ResourceKey.parse("default/pod/web-1")) == "default/pod/web-1"
    node = ResourceKey.parse("-/node/edge-1")
    assert node.cluster_scoped
    assert node.namespace is None
    assert str(node) == "-/node/edge-1"


@pytest.mark.parametrize("text", ["default/pod", "a/b/c/d", "Default/pod/x", "ns/Pod/x", "ns/pod/", "ns/pod/a+b", ""])
def test_resource_key_refuses(text: str) -> None:
    with pytest.raises(ResourceKeyError):
        ResourceKey.parse(text)


def test_link_topics() -> None:
    assert topics.link_down("edge-1") == "edgehive/link/edge-1/down"
    assert topics.link_up("edge-1") == "edgehive/link/edge-1/up"
    assert topics.parse_link("edgehive/link/edge-1/up") == ("edge-1", topics.Direction.UP)
    assert topics.parse_link("edgehive/link/edge-1/state") is None
    assert topics.parse_link("edgehive/other/edge-1/up") is None


@pytest.mark.parametrize("node", ["+", "#", "a/b", "", "EDGE", "edge 1"])
def test_topics_refuse_names_that_would_escape(node: str) -> None:
    with pytest.raises(ValueError, match="not a valid node name"):
        topics.link_down(node)


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("a/+/c", "a/b/c", True),
        ("a/+/c", "a/b/d", False),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("a/b", "a/b/c", False),
        ("a/b/c", "a/b", False),
        ("#", "$hw/events", False),
        ("$hw/#", "$hw/events/x", True),
        ("+/+", "a/b", True),
    ],
)
def test_filter_matching(topic_filter: str, topic: str, expected: bool) -> None:
    assert topics.matches(topic_filter, topic) is expected
