"""Fixtures for real parts, shared by every test (see tests/fixtures/)."""

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
