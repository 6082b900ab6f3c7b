"""The goals of issue 19's table, read from one ``edgehive bench all`` report: which a run meets.

Each goal names the figure it reads (scenario key and path in the JSON) and its bound; a figure the run lacks
(a scenario not chosen, or failed) is reported as missing, never as met. The link's latency goal holds only when
each of its three runs meets it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Goal:
    name: str
    figures: tuple[str, ...]
    """Each ``scenario.path.to.figure`` in the report; every one must meet the bound."""
    bound: float
    at_least: bool
    """True: each figure must be at least ``bound``; False: at most."""

    def read(self, report: Mapping[str, Any]) -> list[float | None]:
        out: list[float | None] = []
        for figure in self.figures:
            value: Any = report
            for part in figure.split("."):
                value = value.get(part) if isinstance(value, Mapping) else None
            out.append(float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None)
        return out

    def verdict(self, report: Mapping[str, Any]) -> dict[str, Any]:
        values = self.read(report)
        met: bool | None = None
        if all(v is not None for v in values):
            met = all((v >= self.bound) if self.at_least else (v <= self.bound) for v in values if v is not None)
        return {"goal": f"{'>=' if self.at_least else '<='} {self.bound:g}", "figures": dict(zip(self.figures, values,
                                                                                                  strict=True)),
                "met": met}


GOALS: tuple[Goal, ...] = (
    Goal("cloud ratio, amqtt", ("cloud.ratio",), 0.8, at_least=True),
    Goal("cloud ratio, mosquitto", ("cloud_mosquitto.ratio",), 0.8, at_least=True),
    Goal("commit latency p99 at 100/s, amqtt (ms)", ("cloud.commit_latency_ms.p99",), 250, at_least=False),
    Goal("commit latency p99 at 100/s, mosquitto (ms)", ("cloud_mosquitto.commit_latency_ms.p99",), 250,
         at_least=False),
    Goal("edge commits/s, amqtt", ("edge.commit_per_s",), 1000, at_least=True),
    Goal("edge commits/s, mosquitto", ("edge_mosquitto.commit_per_s",), 3000, at_least=True),
    Goal("twin ratio, amqtt", ("twin.ratio",), 0.9, at_least=True),
    Goal("twin ratio, mosquitto", ("twin_mosquitto.ratio",), 0.9, at_least=True),
    Goal("link added latency p99, mosquitto, three runs (ms)",
         ("link.added_latency_ms.p99", "link_2.added_latency_ms.p99", "link_3.added_latency_ms.p99"), 5,
         at_least=False),
    Goal("edge footprint, PSS of the edge processes (MB)", ("footprint.edge_pss_mb",), 70, at_least=False),
)
"""Issue 19's table, in its order."""


def verdicts(report: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each goal's bound, the figures it read and whether they meet it (None: a figure is missing)."""
    return {goal.name: goal.verdict(report) for goal in GOALS}
