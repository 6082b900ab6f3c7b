"""The router's rules: RuleEndpoints and Rules as the API server has them, resolved into routes or refused.

No threads, no network: the informers feed it, the bus handler and the HTTP server ask it.
A Rule resolves when both its endpoints exist and the pair is one we carry:

- ``eventbus`` to ``rest``: ``sourceResource`` ``{"topic", "node_name"}``, ``targetResource``
  ``{"resource": "http(s)://..."}``; a node's upload on that topic is POSTed to the URL.
- ``rest`` to ``eventbus``: ``sourceResource`` ``{"path"}``, ``targetResource`` ``{"topic"}``; an HTTP
  call on ``/<node>/<namespace>/<path>[/<rest>]`` is published on the node's ``<topic>[/<rest>]``.

Anything else (servicebus, rest to rest, a missing key) is refused with the reason, which goes in
the Rule's status: KubeEdge logs it and leaves the Rule looking fine.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from schemas.rules import ENDPOINT_TYPES, EVENTBUS, REST, SERVICEBUS, Rule, RuleEndpoint

RuleId = tuple[str, str]
"""(namespace, name)"""


@dataclass(frozen=True, slots=True)
class Route:
    rule: RuleId
    source: str
    """rest or eventbus: which way it carries."""
    node: str = ""
    """eventbus source: the node whose uploads it takes."""
    topic: str = ""
    """eventbus source: the upload topic; eventbus target: the topic published on the node."""
    path: str = ""
    """rest source: the path under /<node>/<namespace>/, without slashes at either end."""
    url: str = ""
    """rest target: where uploads are POSTed."""

    def takes_upload(self, node: str, topic: str) -> bool:
        """KubeEdge's edge publishes a rule's topic as ``<namespace>/<topic>``; the bare topic is taken too, so
        that a rule can name one of the node's ``$hw/events/upload/...`` topics as it is."""
        return (self.source == EVENTBUS and node == self.node
                and topic in (self.topic, f"{self.rule[0]}/{self.topic}"))

    def remainder(self, path: str) -> str | None:
        """What follows this route's path in a request's ``path`` (""; None: the path is not this route's)."""
        if path == self.path:
            return ""
        if path.startswith(self.path + "/"):
            return path[len(self.path) + 1:]
        return None


def strip_slashes(path: str) -> str:
    return path.strip("/")


def resolve(rule: Rule, endpoints: dict[RuleId, RuleEndpoint]) -> Route | str:
    """The route ``rule`` asks for, or why it cannot be carried."""
    ns = rule.namespace
    found = []
    for role, name in (("source", rule.source), ("target", rule.target)):
        endpoint = endpoints.get((ns, name))
        if endpoint is None:
            return f"{role} RuleEndpoint {ns}/{name} does not exist"
        if endpoint.type == SERVICEBUS:
            return (f"{role} RuleEndpoint {name} has ruleEndpointType servicebus, which edgehive's router does "
                    f"not support (rest and eventbus only)")
        if endpoint.type not in ENDPOINT_TYPES:
            return f"{role} RuleEndpoint {name} has an unknown ruleEndpointType {endpoint.type!r}"
        found.append(endpoint.type)
    kinds = (found[0], found[1])
    key = (ns, rule.name)
    if kinds == (EVENTBUS, REST):
        topic, node = rule.source_resource.get("topic", ""), rule.source_resource.get("node_name", "")
        url = rule.target_resource.get("resource", "")
        if not topic or not node:
            return 'an eventbus source needs sourceResource "topic" and "node_name"'
        if {"+", "#"} & set(topic):
            return f"sourceResource topic {topic!r} holds an MQTT wildcard: name one topic"
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return f'a rest target needs targetResource "resource" as an http(s) URL, not {url!r}'
        return Route(key, EVENTBUS, node=node, topic=topic, url=url)
    if kinds == (REST, EVENTBUS):
        path, topic = strip_slashes(rule.source_resource.get("path", "")), rule.target_resource.get("topic", "")
        if not path:
            return 'a rest source needs sourceResource "path"'
        if not topic or {"+", "#"} & set(topic):
            return f'an eventbus target needs targetResource "topic" without MQTT wildcards, not {topic!r}'
        return Route(key, REST, path=path, topic=topic)
    return f"a rule from {kinds[0]} to {kinds[1]} is not supported (eventbus to rest, rest to eventbus)"


class RuleTable:
    """Every Rule and RuleEndpoint the informers have seen; routes recomputed on each change (a cluster has
    tens of rules, not thousands). Thread-safe: the informers write, the bus and HTTP threads read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._endpoints: dict[RuleId, RuleEndpoint] = {}
        self._rules: dict[RuleId, Rule] = {}
        self._routes: dict[RuleId, Route | str] = {}

    def set_endpoint(self, endpoint: RuleEndpoint, present: bool) -> None:
        key = (endpoint.meta.namespace or "default", endpoint.meta.name or "")
        with self._lock:
            if present:
                self._endpoints[key] = endpoint
            else:
                self._endpoints.pop(key, None)
            self._recompute()

    def set_rule(self, rule: Rule, present: bool) -> None:
        key = (rule.namespace, rule.name)
        with self._lock:
            if present:
                self._rules[key] = rule
            else:
                self._rules.pop(key, None)
            self._recompute()

    def _recompute(self) -> None:
        self._routes = {key: resolve(rule, self._endpoints) for key, rule in self._rules.items()}

    def rule(self, key: RuleId) -> Rule | None:
        with self._lock:
            return self._rules.get(key)

    def refusals(self) -> dict[RuleId, str]:
        """Each Rule that cannot be carried, with why."""
        with self._lock:
            return {key: found for key, found in self._routes.items() if isinstance(found, str)}

    def for_upload(self, node: str, topic: str) -> list[Route]:
        with self._lock:
            return [r for r in self._routes.values() if isinstance(r, Route) and r.takes_upload(node, topic)]

    def for_call(self, namespace: str, path: str) -> tuple[Route, str] | None:
        """The rest-to-eventbus route for a call on ``/<node>/<namespace>/<path>``, and the path's rest; the
        longest matching path wins, so that ``/a/b`` is not taken by the rule for ``/a``."""
        path = strip_slashes(path)
        best: tuple[Route, str] | None = None
        with self._lock:
            for found in self._routes.values():
                if not isinstance(found, Route) or found.source != REST or found.rule[0] != namespace:
                    continue
                rest = found.remainder(path)
                if rest is not None and (best is None or len(found.path) > len(best[0].path)):
                    best = (found, rest)
        return best
