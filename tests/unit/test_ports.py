"""Listening ports picked below the ephemeral range (runtime/ports.py), shared by the benchmarks and the tests."""

from __future__ import annotations

import socket

import pytest

from runtime.ports import NoFreePort, PortPicker


def test_ports_come_from_the_range_and_never_twice() -> None:
    picker = PortPicker(range(17000, 17040))
    handed = [picker.free_port() for _ in range(10)]
    assert len(set(handed)) == 10
    assert all(17000 <= port < 17040 for port in handed)


def test_a_port_in_use_is_skipped_and_a_full_range_refused() -> None:
    with socket.socket() as held:
        held.bind(("", 0))
        port = held.getsockname()[1]
        held.listen()
        picker = PortPicker(range(port, port + 1))
        with pytest.raises(NoFreePort, match=f"no free TCP port in {port}-{port}"):
            picker.free_port()
