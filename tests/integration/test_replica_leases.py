"""Replica Leases on the real API server: members see each other, a silent one is dead after its duration,
and a replica that cannot renew stops serving before the others count it dead."""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud.kube import Kube, KubeError
from cloud.replicas.leases import NAMESPACE, LeaseKeeper, lease_name
from tests.fixtures.apiserver import ApiServer
from tests.fixtures.processes import wait_until

DURATION = 3


@pytest.fixture
def kubes(apiserver: ApiServer) -> Iterator[list[Kube]]:
    made = [Kube.connect(str(apiserver.kubeconfig)) for _ in range(2)]
    yield made
    for kube in made:
        kube.close()


def keepers(kubes: list[Kube]) -> tuple[LeaseKeeper, LeaseKeeper]:
    group = f"hub{secrets.token_hex(3)}"  # each test its own group of members
    a, b = (LeaseKeeper(kube, group=group, identity=name, duration_s=DURATION)
            for kube, name in zip(kubes, "ab", strict=True))
    return a, b


def both_see_both(a: LeaseKeeper, b: LeaseKeeper) -> bool:
    seen = a.tick(), b.tick()  # both renew on every try
    return seen == ({"a", "b"}, {"a", "b"})


def test_two_keepers_see_each_other_and_a_silent_one_is_gone_after_its_duration(kubes: list[Kube]) -> None:
    a, b = keepers(kubes)
    wait_until(lambda: both_see_both(a, b), timeout=15, what="each keeper seeing both", interval=a.renew_interval_s)
    found = kubes[0].coordination.read_namespaced_lease(lease_name(a.group, "a"), NAMESPACE)
    assert (found.spec.holder_identity, found.spec.lease_duration_seconds) == ("a", DURATION)
    assert found.metadata.labels == {"replicas.edgehive.io/group": a.group}

    a_last = a.valid_until() + a.margin_s - DURATION  # when a last renewed
    wait_until(lambda: b.tick() == {"b"}, timeout=DURATION + 5, what="b seeing a gone", interval=0.2)
    gone_after = time.time() - a_last
    assert gone_after >= DURATION, f"a counted dead {gone_after:.2f} s after its last renewal"
    assert not a.serving(), "a still served while b took its nodes"
    assert "a" not in a.members()


def test_a_keeper_that_cannot_reach_the_api_server_stops_serving_before_its_lease_expires(
        kubes: list[Kube], apiserver: ApiServer, tmp_path: Path) -> None:
    a, b = keepers(kubes)
    wait_until(lambda: both_see_both(a, b), timeout=15, what="each keeper seeing both", interval=a.renew_interval_s)
    with socket.socket() as bound:  # a port bound but not listening: refused, and no one else can take it
        bound.bind(("127.0.0.1", 0))
        elsewhere = tmp_path / "kubeconfig"
        elsewhere.write_text(apiserver.kubeconfig.read_text().replace(
            apiserver.url, f"https://127.0.0.1:{bound.getsockname()[1]}"))
        a.kube = Kube.connect(str(elsewhere))
        kubes.append(a.kube)
        with pytest.raises(KubeError):
            a.kube.list_leases(NAMESPACE, "a=b", timeout_s=1)
        cut_off(a, b)


def cut_off(a: LeaseKeeper, b: LeaseKeeper) -> None:
    cut = time.time()
    assert a.tick() == {"a", "b"}, "one failed renewal within the duration is no reason to stop"
    def a_stopped() -> float | None:
        b.tick()  # b keeps renewing meanwhile
        return time.time() if not a.serving() and a.tick() == {"b"} else None

    stopped = wait_until(a_stopped, timeout=DURATION + 2, what="a stopping", interval=0.1)
    taken = wait_until(lambda: time.time() if b.tick() == {"b"} else None, timeout=DURATION + 3,
                       what="b taking over", interval=0.1)
    assert stopped < taken, "a must stop serving before b can count it dead"
    assert stopped - cut <= DURATION


def test_a_released_lease_is_gone_at_once(kubes: list[Kube]) -> None:
    a, b = keepers(kubes)
    wait_until(lambda: both_see_both(a, b), timeout=15, what="each keeper seeing both", interval=a.renew_interval_s)
    a.release()
    assert not a.serving()
    assert b.tick() == {"b"}
