"""Replica Leases on the real API server: members see each other (through a watch of their group's Leases), a
silent one is dead after its duration, a renewal is one write, and a replica that cannot renew stops serving
before the others count it dead."""

from __future__ import annotations

import logging
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from cloud.kube import Kube, KubeError
from cloud.replicas.leases import NAMESPACE, LeaseKeeper, lease_name
from cloud.replicas.leasewatch import LeaseWatch
from tests.fixtures.apiserver import ApiServer
from tests.fixtures.processes import wait_until
from tests.support.tcpproxy import cuttable

DURATION = 3


@pytest.fixture
def kubes(apiserver: ApiServer) -> Iterator[list[Kube]]:
    made = [Kube.connect(str(apiserver.kubeconfig)) for _ in range(3)]
    yield made
    for kube in made:
        kube.close()


@pytest.fixture
def watches() -> Iterator[list[LeaseWatch]]:
    made: list[LeaseWatch] = []
    yield made
    for watch in made:
        watch.stop()


def keeper(kube: Kube, group: str, name: str, watches: list[LeaseWatch]) -> LeaseKeeper:
    watch = LeaseWatch(kube, group, read_timeout_s=DURATION)
    watches.append(watch)
    made = LeaseKeeper(kube, group=group, identity=name, duration_s=DURATION, view=watch)
    made.start()
    return made


def keepers(kubes: list[Kube], watches: list[LeaseWatch]) -> tuple[LeaseKeeper, LeaseKeeper]:
    group = f"hub{secrets.token_hex(3)}"  # each test its own group of members
    a, b = (keeper(kube, group, name, watches) for kube, name in zip(kubes, "ab", strict=False))
    return a, b


def both_see_both(a: LeaseKeeper, b: LeaseKeeper) -> bool:
    seen = a.tick(), b.tick()  # both renew on every try
    return seen == ({"a", "b"}, {"a", "b"})


def test_two_keepers_see_each_other_and_a_silent_one_is_gone_after_its_duration(
        kubes: list[Kube], watches: list[LeaseWatch]) -> None:
    a, b = keepers(kubes, watches)
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
        kubes: list[Kube], watches: list[LeaseWatch], apiserver: ApiServer, tmp_path: Path) -> None:
    a, b = keepers(kubes, watches)
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


def test_a_keeper_cut_off_from_the_api_server_stops_serving_before_a_joiner_it_cannot_see_takes_its_nodes(
        kubes: list[Kube], watches: list[LeaseWatch], apiserver: ApiServer, tmp_path: Path) -> None:
    """a reaches the API server, its renewals and its watch both, through a proxy the test cuts just after a's
    renewal; c joins at once. a cannot read c, so it serves every node it had until its own Lease runs out: c
    must not take its share before then. The API server's own clock and Leases decide, as in a fleet."""
    url = urlsplit(apiserver.url)
    with cuttable(url.hostname or "127.0.0.1", url.port or 443) as proxy:
        through = tmp_path / "kubeconfig"
        through.write_text(apiserver.kubeconfig.read_text().replace(
            apiserver.url, f"{url.scheme}://127.0.0.1:{proxy.port}"))
        a_kube = Kube.connect(str(through))
        kubes.append(a_kube)
        group = f"hub{secrets.token_hex(3)}"
        a, b = keeper(a_kube, group, "a", watches), keeper(kubes[1], group, "b", watches)
        wait_until(lambda: both_see_both(a, b), timeout=15, what="each keeper seeing both",
                   interval=a.renew_interval_s)
        wait_until(lambda: a.tick() == {"a", "b"}, timeout=5, what="a renewal of a's that counts", interval=0.1)
        proxy.cut()
        c = keeper(kubes[2], group, "c", watches)
        c.tick()
        stopped: list[float] = []  # when a stopped serving, recorded on the way

        def c_taking() -> float | None:
            if not stopped and "a" not in a.tick():
                stopped.append(time.time())
            took = time.time() if "c" in c.tick() else None
            b.tick()
            return took

        c_took = wait_until(c_taking, timeout=DURATION + 5, what="c taking its nodes", interval=0.02)
        assert stopped, f"a still served when c took its nodes at {c_took}: two owners"
        a_stopped = stopped[0]
        assert a_stopped < c_took, f"a served until {a_stopped}, c took its nodes at {c_took}: two owners"
        assert "c" in b.members(), "b, which reads c, let c's nodes go before c took them"
        print(f"\na stopped {c_took - a_stopped:.2f} s before c took its nodes")


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


def test_a_released_lease_is_gone_at_once(kubes: list[Kube], watches: list[LeaseWatch]) -> None:
    a, b = keepers(kubes, watches)
    wait_until(lambda: both_see_both(a, b), timeout=15, what="each keeper seeing both", interval=a.renew_interval_s)
    a.release()
    assert not a.serving()
    assert b.tick() == {"b"}


class CountingKube(Kube):
    """The real client, counting the Lease calls made through it."""

    calls: list[str]

    def list_leases(self, *args: Any, **kwargs: Any) -> tuple[dict[str, Any], ...]:
        self.calls.append("list")
        return super().list_leases(*args, **kwargs)

    def get_lease(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        self.calls.append("get")
        return super().get_lease(*args, **kwargs)

    def write_lease(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.calls.append("write")
        return super().write_lease(*args, **kwargs)


def test_a_renewal_is_one_write_and_a_joiner_is_seen_by_the_watch_between_renewals(
        kubes: list[Kube], watches: list[LeaseWatch]) -> None:
    a, b = keepers(kubes, watches)
    wait_until(lambda: both_see_both(a, b), timeout=15, what="each keeper seeing both", interval=a.renew_interval_s)
    counting = CountingKube(kubes[0].api_client)
    counting.calls = []
    a.kube = counting
    for _ in range(5):
        assert a.tick() == {"a", "b"}
    assert counting.calls == ["write"] * 5, "a renewal reads nothing: the watch has the Lease it replaces"
    c = keeper(kubes[2], a.group, "c", watches)
    c.tick()
    counting.calls.clear()
    def a_counts_c() -> float | None:
        c.tick()  # c renews (a joiner that does not is dead before it counts); a does not
        return time.time() if "c" in a.members() else None

    joined = wait_until(a_counts_c, timeout=c.join_delay_s + 5, what="a counting c, without renewing",
                        interval=0.05)
    assert counting.calls == [], "the joiner came by the watch"
    assert joined >= c.takes_at() - c.take_after_s - 0.05, "counted before its join delay"
    assert "c" in b.tick()


class WatchCountingKube(Kube):
    """The real client, counting the watches opened through it."""

    opened = 0

    def watch(self, *args: Any, **kwargs: Any) -> Iterator[tuple[str, dict[str, Any]]]:
        self.opened += 1
        return super().watch(*args, **kwargs)


def test_a_quiet_watch_is_opened_again_from_where_it_was_and_still_delivers(
        kubes: list[Kube], watches: list[LeaseWatch], caplog: pytest.LogCaptureFixture) -> None:
    """A watch with nothing to say for its read timeout is opened again (a connection that died without a word
    looks the same), from the same resourceVersion: no listing again, no warning, and what comes next arrives."""
    kubes[1].ensure_namespace(NAMESPACE)
    counting = WatchCountingKube(kubes[0].api_client)
    group = f"hub{secrets.token_hex(3)}"
    watch = LeaseWatch(counting, group, read_timeout_s=0.5)
    watches.append(watch)
    caplog.set_level(logging.DEBUG, logger="cloud.informer")
    watch.start()
    wait_until(lambda: counting.opened >= 3, timeout=15, what="the quiet watch opened again twice", interval=0.1)
    writer = LeaseKeeper(kubes[1], group=group, identity="w", duration_s=DURATION, view=watch)
    writer.tick()
    assert writer.serving(), "the renewal counted: the watch, opened again, showed it"
    assert set(watch.leases()) == {lease_name(group, "w")}
    assert watch.informer.relists == 1, "opened again from where it was, not listed again"
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "cloud.informer"]
    assert any("quiet" in message for _, message in said), said
    assert all(level < logging.WARNING for level, _ in said), said
