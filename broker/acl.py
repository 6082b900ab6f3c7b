"""Who may use which topic on the cloud broker: one rule set, enforced by amqtt and written for mosquitto.

A node's user (named after the node) may publish only ``edgehive/link/<node>/up``,
its stream frames ``edgehive/link/<node>/stream/up`` and its bridge's retained
``edgehive/link/<node>/hello``, and subscribe only to
``edgehive/link/<node>/down`` and ``edgehive/link/<node>/stream/down``; a cloud user
may use every topic. So a stolen node credential exposes that node's traffic and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas import topics
from schemas.names import is_node_name


@dataclass(frozen=True)
class LinkAcl:
    cloud_users: frozenset[str] = frozenset({"cloud"})

    def _node_of(self, user: str | None) -> str | None:
        if user is None or user in self.cloud_users or not is_node_name(user):
            return None
        return user

    def may_publish(self, user: str | None, topic: str) -> bool:
        if user in self.cloud_users:
            return True
        node = self._node_of(user)
        return node is not None and topic in node_publishes(node)

    def may_subscribe(self, user: str | None, topic_filter: str) -> bool:
        if user in self.cloud_users:
            return True
        node = self._node_of(user)
        return node is not None and topic_filter in _down(node)

    def may_receive(self, user: str | None, topic: str) -> bool:
        if user in self.cloud_users:
            return True
        node = self._node_of(user)
        return node is not None and topic in _down(node)

    def mosquitto_acl(self) -> str:
        """The same rules in mosquitto's acl_file syntax (``%u`` is the user name)."""
        lines = ["# Written by 'edgehive broker --mosquitto-config'. Node users are named after their node."]
        for user in sorted(self.cloud_users):
            lines += [f"user {user}", "topic readwrite #"]
        lines += [
            "",
            "# Every other user is a node: its own link topics only.",
            f"pattern write {topics.LINK}/%u/up",
            f"pattern read {topics.LINK}/%u/down",
            f"pattern write {topics.LINK}/%u/stream/up",
            f"pattern write {topics.LINK}/%u/hello",
            f"pattern read {topics.LINK}/%u/stream/down",
        ]
        return "\n".join(lines) + "\n"


def node_publishes(node: str) -> tuple[str, str, str]:
    """What a node may publish: its resource and stream topics towards the cloud, and its bridge's hello."""
    return topics.link_up(node), topics.stream(node, topics.Direction.UP), topics.link_hello(node)


def node_subscribes(node: str) -> tuple[str, str]:
    """What a node may subscribe to and receive (exact topics, no wildcards)."""
    return _down(node)


def _down(node: str) -> tuple[str, str]:
    """What a node may subscribe to and receive: its resource and stream topics towards the edge."""
    return topics.link_down(node), topics.stream(node, topics.Direction.DOWN)
