"""Broker restarts on both sides of the link, with their persistent sessions lost, during a mixed stream.

The cloud broker is mosquitto here (the crash scenario runs amqtt): killed with its
persistence store deleted, so every session and queued message on it is gone; and
restarted cleanly, keeping them. The edge broker (inside ``edgehive edge``: mosquitto by
default, which saves its sessions once a minute, or amqtt, which keeps them in memory only)
loses on a kill what it had not saved. Nothing may be lost
for all that: the delivery protocol sends again whatever was not acknowledged end
to end, so every node converges to the API server's view and every Device shows its
last reading.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable
from functools import partial

import pytest

from tests.fixtures.processes import wait_until
from tests.support.fleet import EdgeSite, Fleet
from tests.support.workload import Workload

pytestmark = [pytest.mark.slow]


def restart_cloud_broker(fleet: Fleet, *, kill: bool, lose_store: bool) -> None:
    process = fleet.cloud["cloud-broker"]
    if kill:
        process.kill()
    else:
        process.stop(timeout=30)
    if lose_store:
        store = fleet.workdir / "cloud-broker" / "mosquitto" / "data"
        shutil.rmtree(store)
        store.mkdir()
    fleet.start_broker()


def kill_edge_broker(site: EdgeSite) -> None:
    pid = site.pid_of(site.broker_marker)
    assert pid is not None, f"no broker on {site.node}'s host"
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: site.pid_of(site.broker_marker) not in (None, pid), timeout=30,
               what="edgehive edge restarting its broker", alive=site.process)


def kill_both(fleet: Fleet, site: EdgeSite) -> None:
    kill_edge_broker(site)
    restart_cloud_broker(fleet, kill=True, lose_store=True)


@pytest.mark.timeout(900)
def test_broker_restarts_lose_nothing(fleet_factory: Callable[..., Fleet]) -> None:
    fleet = fleet_factory(2, broker_kind="mosquitto")
    work = Workload(fleet, configmaps=10, sleepers=1)
    work.setup()
    site = next(iter(fleet.sites.values()))
    rounds = {
        "cloud mosquitto killed, store deleted": partial(restart_cloud_broker, fleet, kill=True, lose_store=True),
        "cloud mosquitto restarted cleanly": partial(restart_cloud_broker, fleet, kill=False, lose_store=False),
        "edge broker killed (sessions in memory)": partial(kill_edge_broker, site),
        "both killed, cloud store deleted": partial(kill_both, fleet, site),
    }
    times = {name: work.disrupt(action, name) for name, action in rounds.items()}
    print("\nbroker restarts during a mixed stream; seconds to convergence from the restart, and from the "
          "stream's end:")
    for name, (took, tail) in times.items():
        print(f"  {name:<42} {took:5.1f} {tail:5.1f}")
