"""``bench scale --broker nats``'s arithmetic: the per-node figures drawn from two rounds, the goals, and the
capacity model to 100,000 nodes."""

import pytest

from edgehive.bench.capacity import Limits, PerNode, controllers_verdict, model
from edgehive.bench.scale_fleet import ServedBy
from edgehive.bench.scale_ha_report import (
    Failover,
    Replica,
    Round,
    as_json,
    balance,
    build_ha_report,
    controller_cache_kb,
    controller_cpu_split,
)

NODES = 1000


def _round(replicas: int, hub_cpu: float, *, hub_rss: tuple[list[int], list[int]],
           controller_rss: tuple[list[int], list[int]], failover: Failover | None = None,
           simulators: float = 0.1) -> Round:
    """A round measured over 10 s: CPU seconds are ten times the cores."""
    return Round(replicas=replicas, connect_s=5.0, seconds=10.0,
                 cpu={"cloudhub": hub_cpu * 10, "edgecontroller": 2.0, "nats": 3.0 * replicas, "apiserver": 4.0,
                      "etcd": 1.0, "simulators": simulators * 10},
                 machine=1.5,
                 idle_rss_kb={"cloudhub": hub_rss[0], "edgecontroller": controller_rss[0],
                              "nats": [10_000] * replicas},
                 rss_kb={"cloudhub": hub_rss[1], "edgecontroller": controller_rss[1],
                         "nats": [10_000 + 50 * NODES] * replicas},
                 owned={f"cloudhub-{i + 1}": NODES // replicas + (1 if i == 0 else 0) for i in range(replicas)}
                 if replicas > 1 else {},
                 idle_cores={"cloudhub": 0.01 * replicas, "edgecontroller": 0.0, "nats": 0.0},
                 failover=failover)


def test_balance_is_max_over_mean_and_needs_two_replicas() -> None:
    assert balance({"a": 400, "b": 300, "c": 300}) == 1.2
    assert balance({"a": 1000}) is None
    assert balance({}) is None


def test_the_controller_cache_is_each_replicas_growth_against_the_first_idle_controller() -> None:
    first = _round(1, 0.1, hub_rss=([50_000], [60_000]), controller_rss=([40_000], [70_000]))
    assert controller_cache_kb(first, NODES, 40_000) == 30.0  # against itself before the objects
    # Sharded replicas start with the objects there, so their own idle reading holds the cache already: each is
    # read against the first round's, and they are averaged (each caches every object, not its share).
    three = _round(3, 0.1, hub_rss=([50_000] * 3, [55_000] * 3),
                   controller_rss=([68_000, 69_000, 70_000], [69_000, 70_000, 71_000]))
    assert controller_cache_kb(three, NODES, 40_000) == 30.0


def test_report_overhead_goals_and_memory_per_node() -> None:
    failover = Failover(failover_s=12.5, failover_nodes=333, broker_failover_s=11.0, broker_failover_nodes=300,
                        lost_messages=0, updates=2000, update_errors=0, stale=0)
    one = _round(1, 0.20, hub_rss=([50_000], [70_000]), controller_rss=([40_000], [70_000]))
    three = _round(3, 0.26, hub_rss=([50_000] * 3, [60_000] * 3),
                   controller_rss=([69_000] * 3, [68_000, 70_000, 72_000]), failover=failover)
    three.controllers = {"ec-1": Replica(0.05, 68_000, 300), "ec-2": Replica(0.07, 70_000, 330),
                         "ec-3": Replica(0.08, 72_000, 370)}
    report = build_ha_report(NODES, 2, [], [one, three])
    # cloud = CloudHub + EdgeController: 0.2 + 0.2 cores, then 0.26 + 0.2
    assert report.cloud_cpu_cores_per_1000_nodes == {"1": 0.4, "3": 0.46}
    assert report.replication_overhead == 1.15
    assert report.control_ratio == 1.0  # the simulated fleet's CPU did not move
    assert report.replication_overhead_vs_control == 1.15
    assert report.ownership_balance == pytest.approx(1.002, abs=1e-3)
    assert report.memory_kb_per_node == {"cloudhub_replica": 30.0, "nats_member": 50.0, "edgecontroller": 30.0}
    assert report.goals == {"replication_overhead <= 1.15": True, "ownership_balance <= 1.2": True,
                            "failover_s <= 15.0": True, "broker_failover_s <= 10.0": False,
                            "lost_messages <= 0": True}
    # Each EdgeController replica on its own, against the first round's idle controller (40,000 kB).
    replicas = as_json(report)["edgecontroller_replicas"]
    assert replicas["ec-3"] == {"cores": 0.08, "rss_mb": 70.3, "owned": 370, "kb_per_fleet_node": 32.0}
    assert list(replicas) == ["ec-1", "ec-2", "ec-3"]
    assert report.edgecontroller_balance == 1.11  # 370 over a mean of 333.3
    # Three replicas share the controller's CPU at 100,000 nodes; each still holds the whole cache.
    controller = as_json(report)["capacity_100k"]["parts"][1]
    assert controller["name"] == "edgecontroller"
    assert controller["count"] == 29  # 20 cores (0.2 per 1,000 nodes) over replicas of at most 0.7
    assert controller["mb_each"] == pytest.approx(30.0 * 100_000 / 1024)


def test_the_overhead_against_the_control_divides_out_what_moved_the_whole_machine() -> None:
    """A busier machine in the second round (the fleet's CPU up by a fifth for the same work): the raw overhead
    says 1.3, the overhead against the control what is left once the machine's share is divided out."""
    one = _round(1, 0.20, hub_rss=([1], [2]), controller_rss=([1], [2]), simulators=0.1)
    three = _round(3, 0.28, hub_rss=([1] * 3, [2] * 3), controller_rss=([1] * 3, [2] * 3), simulators=0.12)
    three.cpu["edgecontroller"] = 2.4
    report = build_ha_report(NODES, 2, [], [one, three])
    assert report.replication_overhead == 1.3
    assert report.control_ratio == 1.2
    assert report.replication_overhead_vs_control == 1.083
    assert as_json(report)["replication_overhead_vs_control"] == 1.083
    no_fleet = _round(1, 0.20, hub_rss=([1], [2]), controller_rss=([1], [2]), simulators=0.0)
    assert build_ha_report(NODES, 2, [], [no_fleet, three]).replication_overhead_vs_control is None


def test_one_round_leaves_the_replica_figures_unmeasured() -> None:
    report = build_ha_report(NODES, 2, [], [_round(1, 0.2, hub_rss=([1], [2]), controller_rss=([1], [2]))])
    assert report.replication_overhead is None
    assert report.edgecontroller_replicas == {}
    assert report.edgecontroller_balance is None
    assert report.failover_s is None
    assert report.goals["failover_s <= 15.0"] is None


def test_capacity_scales_cloudhub_out_and_finds_what_cannot() -> None:
    per = PerNode(hub_cores=0.0002, hub_kb=30.0, member_cores=0.00003, member_kb=40.0, controller_cores=0.00005,
                  controller_kb=30.0, api_cores=0.0001)
    capacity = model(per, 100_000, Limits(python_cores=0.7, python_mb=4096, member_cores=4.0, member_mb=8192))
    hub = capacity.part("cloudhub")
    assert hub.count == 29  # 20 cores of CloudHub over replicas of at most 0.7 core
    assert hub.cores_each == pytest.approx(20 / 29)
    assert hub.fits
    controller = capacity.part("edgecontroller")
    assert controller.count == 8  # 5 cores of EdgeController over replicas of at most 0.7 core
    assert controller.cores_each == pytest.approx(5.0 / 8)
    assert controller.mb_each == pytest.approx(30.0 * 100_000 / 1024)  # not divided: each caches every object
    assert controller.max_nodes == 139_810  # 4,096 MB / 30 KB: memory alone, the CPU scales out
    assert controller.fits
    member = capacity.part("nats-member")
    assert member.count == 3
    assert member.cores_each == pytest.approx(3.0)
    assert member.max_nodes == 133_333  # 4 cores / 0.00003: the CPU binds before memory (209,715 nodes)
    assert capacity.breaks_first.name == "nats-member"
    assert capacity.part("apiserver+etcd").max_nodes is None


def test_a_replicas_full_cache_is_the_controllers_limit_however_many_replicas() -> None:
    per = PerNode(hub_cores=0.0002, hub_kb=30.0, member_cores=0.00001, member_kb=40.0, controller_cores=0.0003,
                  controller_kb=60.0, api_cores=0.0001)
    controller = model(per, 100_000, Limits()).part("edgecontroller")
    assert controller.count == 43  # 30 cores over 0.7
    assert controller.mb_each == pytest.approx(60.0 * 100_000 / 1024)
    assert not controller.fits  # 5,859 MB of cache per replica, over 4,096
    assert controller.max_nodes == 69_905
    assert model(per, 100_000, Limits()).breaks_first.name == "edgecontroller"


def test_at_least_two_replicas_and_memory_can_decide() -> None:
    per = PerNode(hub_cores=0.0, hub_kb=100.0, member_cores=0.0, member_kb=1.0, controller_cores=0.0,
                  controller_kb=1.0, api_cores=0.0)
    assert model(per, 100, Limits()).part("cloudhub").count == 2
    assert model(per, 100_000, Limits(python_mb=1000)).part("cloudhub").count == 10  # 9,766 MB in 1,000 MB


def test_controllers_verdict_names_replicas_and_the_cache_each_holds() -> None:
    def verdict(kb: float) -> str:
        per = PerNode(hub_cores=0.0, hub_kb=1.0, member_cores=0.0, member_kb=1.0, controller_cores=0.00005,
                      controller_kb=kb, api_cores=0.0)
        return controllers_verdict(model(per).part("edgecontroller"), kb)

    assert verdict(30.0) == ("sharded: 8 replicas at 100,000 nodes, 0.62 cores each; every replica caches every "
                             "object, 2,930 MB each at 100,000 nodes, within the 4,096 MB a replica is given")
    assert verdict(50.0).endswith("4,883 MB each at 100,000 nodes, over the 4,096 MB a replica is given; so a "
                                  "replica is limited to about 83,886 nodes whatever their number: trimming the "
                                  "informers (a per-shard watch where the API allows one) is what lifts that")
    per = PerNode(hub_cores=0.0, hub_kb=1.0, member_cores=0.0, member_kb=1.0, controller_cores=0.00005,
                  controller_kb=1.0, api_cores=0.0, controller_fleet_cores=0.00001)
    assert "every replica also spends 1.00 cores on the whole fleet's events, which more replicas do not divide " \
           "(over its 0.7 core ceiling)" in controllers_verdict(model(per).part("edgecontroller"), 1.0, 0.00001)


def test_the_controllers_cpu_splits_into_what_divides_and_what_every_replica_pays() -> None:
    # N=1: 0.2 cores for 1,000 nodes; N=3: 0.3 for the same nodes. 3a + b = 0.0003, a + b = 0.0002 per node.
    one = _round(1, 0.1, hub_rss=([1], [2]), controller_rss=([1], [2]))
    three = _round(3, 0.1, hub_rss=([1] * 3, [2] * 3), controller_rss=([1] * 3, [2] * 3))
    three.cpu["edgecontroller"] = 3.0
    owned, fleet = controller_cpu_split(one, three, NODES)
    assert owned == pytest.approx(0.00015)
    assert fleet == pytest.approx(0.00005)
    assert controller_cpu_split(one, one, NODES) == pytest.approx((0.0002, 0.0))
    three.cpu["edgecontroller"] = 1.0  # replicas cheaper than one (noise): nothing counted fleet-wide
    assert controller_cpu_split(one, three, NODES) == pytest.approx((0.0002, 0.0))
    report = build_ha_report(NODES, 2, [], [one, _round(3, 0.1, hub_rss=([1] * 3, [2] * 3),
                                                        controller_rss=([1] * 3, [2] * 3))])
    assert report.controller_cores_per_1000_nodes == {"owned": 0.2, "fleet": 0.0}


def test_the_fleet_wide_cpu_sets_how_many_replicas_and_where_they_stop_helping() -> None:
    per = PerNode(hub_cores=0.0, hub_kb=1.0, member_cores=0.0, member_kb=1.0, controller_cores=0.0001,
                  controller_kb=1.0, api_cores=0.0, controller_fleet_cores=0.000002)
    controller = model(per, 100_000, Limits()).part("edgecontroller")
    # each replica: 0.2 cores for the fleet's events, so 0.5 left for its share of 10 cores: 20 replicas
    assert controller.count == 20
    assert controller.cores_each == pytest.approx(0.7)
    assert controller.fits
    assert controller.max_nodes == 350_000  # 0.7 / 0.000002: past it one replica's fleet-wide part alone is too much
    heavy = model(PerNode(**{**per.__dict__, "controller_fleet_cores": 0.00001}), 100_000, Limits())
    assert not heavy.part("edgecontroller").fits  # 1.0 core each before any share
    assert heavy.part("edgecontroller").max_nodes == 70_000


def test_a_node_counts_as_moved_when_another_replica_announces_it_after_the_mark() -> None:
    served = ServedBy()
    served.announced("a", "hub-1", 10)
    served.announced("b", "hub-2", 10)
    served.announced("c", "hub-1", 10)
    served.announced("a", "hub-1", 25)  # the same replica again (a new session of its own): not a move
    served.announced("b", "hub-3", 15)  # moved before the mark
    assert served.moves_since(20) == 0
    served.announced("c", "hub-2", 30)  # dropped by hub-1 ...
    served.announced("c", "hub-1", 31)  # ... and taken back: one node moved (twice)
    served.announced("d", "hub-2", 32)  # a node first seen after the mark
    assert served.moves_since(20) == 1
    assert served.moves_since(0) == 2
