"""Fixtures for real parts, shared by every test (see tests/fixtures/)."""

import pytest

pytest_plugins = [
    "tests.fixtures.apiserver",
    "tests.fixtures.controlplane",
    "tests.fixtures.podman",
    "tests.fixtures.brokers",
    "tests.fixtures.nats",
    "tests.fixtures.netns",
    "tests.fixtures.registry",
    "tests.fixtures.modbus",
    "tests.support.natns",
    "tests.support.edge_node",
    "tests.support.natnode",
    "tests.support.cluster",
    "tests.support.fleet",
]

LONGEST_FIRST = ("tests/resilience/", "tests/containers/")
"""Where the files of several minutes each are (a partition, twenty power cuts, compose stacks). scripts/test's
workers take whole files in collection order, so these go first: started last, the longest ran alone at the end
of the run while the other worker sat idle (test_partition's 6 minutes)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        return next((i for i, where in enumerate(LONGEST_FIRST) if item.nodeid.startswith(where)), len(LONGEST_FIRST))

    items.sort(key=rank)  # stable: each file keeps its order
