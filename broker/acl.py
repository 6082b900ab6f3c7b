"""Who may use which topic on the cloud broker: one rule set, enforced by amqtt and written for mosquitto.

A node's user (named after the node) may publish only ``edgehive/link/<node>/up``
and subscribe only to ``edgehive/link/<node>/down``; a cloud user may use every
topic. So a stolen node credential exposes that node's traffic and nothing else.
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
        return node is not None and topic == topics.link_up(node)

    def may_subscribe(self, user: str | None, topic_filter: str) -> bool:
        if user in self.cloud_users:
            return True
        node = self._node_of(user)
        return node is not None and topic_filter == topics.link_down(node)

    def may_receive(self, user: str | None, topic: str) -> bool:
        if user in self.cloud_users:
            return True
        node = self._node_of(user)
        return node is not None and topic == topics.link_down(node)

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
        ]
        return "\n".join(lines) + "\n"
