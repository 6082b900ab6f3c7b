"""When EdgeD sends its node status (edge/edged/nodereport.py): the kubelet's rule, inputs in, send or not out."""

from __future__ import annotations

import argparse
import copy
from typing import Any

import pytest

from cloud.edgecontroller.controller import same_conditions
from edge.edged.component import EdgeDSettings
from edge.edged.machine import MI, MachineInfo, Usage
from edge.edged.node import NodeFacts, node_status
from edge.edged.nodereport import REPORT_S, StatusReporter, carry_transition_times, check_frequencies, status_changed
from runtime import settings as settings_mod
from runtime.settings import SettingsError
from schemas.fields import BodyError
from schemas.reports import LeaseHeartbeat

GI = 1024 * MI
MACHINE = MachineInfo(os_image="Debian GNU/Linux 12 (bookworm)", kernel_version="6.1.0", architecture="arm64",
                      machine_id="m1", system_uuid="u1", boot_id="b1", hostname="gateway-7")
CALM = Usage(cpus=4, memory_total=8 * GI, memory_available=6 * GI, fs_total=100 * GI, fs_available=50 * GI,
             pid_limit=32768, pids_used=300)


def status(at: float, *, ready: bool = True, message: str = "podman is ready", disk_full: str | None = None
           ) -> dict[str, Any]:
    """A node status computed at ``at`` on a fixed machine, as EdgeD's node-status thread builds it."""
    return node_status("10.0.0.5", ready, message, at, disk_full, facts=NodeFacts(machine=MACHINE), usage=CALM)


def test_only_heartbeat_times_differ_is_no_change() -> None:
    reporter = StatusReporter()
    first = reporter.computed(status(1000.0))
    later = reporter.computed(status(1010.0))
    assert later["conditions"][0]["lastHeartbeatTime"] != first["conditions"][0]["lastHeartbeatTime"]
    assert not status_changed(first, later)


def test_conditions_compared_in_type_order() -> None:
    first = status(1000.0)
    shuffled = {**first, "conditions": list(reversed(first["conditions"]))}
    assert not status_changed(first, shuffled)


@pytest.mark.parametrize("change", [
    lambda s: s["conditions"][-1].update(status="False"),
    lambda s: s["conditions"][-1].update(reason="EdgeNotReady"),
    lambda s: s["conditions"][-1].update(message="podman does not answer"),
    lambda s: s["addresses"][0].update(address="10.0.0.6"),
    lambda s: s["capacity"].update(memory="1Gi"),
    lambda s: s["allocatable"].update(pods="10"),
    lambda s: s["nodeInfo"].update(containerRuntimeVersion="podman://4.9.0"),
    lambda s: s.update(images=[{"names": ["busybox"], "sizeBytes": 1}]),
    lambda s: s.update(daemonEndpoints={"kubeletEndpoint": {"Port": 10350}}),
    lambda s: s["conditions"].pop(0),
], ids=["condition status", "reason", "message", "addresses", "capacity", "allocatable", "nodeInfo", "images",
        "daemonEndpoints", "a condition gone"])
def test_any_other_field_is_a_change(change: Any) -> None:
    before = status(1000.0)
    after = copy.deepcopy(before)
    change(after)
    assert status_changed(before, after)


def test_transition_time_moves_only_with_the_status() -> None:
    reporter = StatusReporter()
    first = reporter.computed(status(1000.0))
    same = reporter.computed(status(1010.0))
    assert [c["lastTransitionTime"] for c in same["conditions"]] == \
        [c["lastTransitionTime"] for c in first["conditions"]]
    flipped = reporter.computed(status(1020.0, ready=False, message="podman does not answer"))
    by_type = {c["type"]: c for c in flipped["conditions"]}
    assert by_type["Ready"]["lastTransitionTime"] == by_type["Ready"]["lastHeartbeatTime"]
    assert by_type["Ready"]["lastTransitionTime"] != {c["type"]: c for c in first["conditions"]}["Ready"][
        "lastTransitionTime"]
    assert by_type["MemoryPressure"]["lastTransitionTime"] == first["conditions"][0]["lastTransitionTime"]
    # A changed message alone is not a transition.
    reworded = reporter.computed(status(1030.0, ready=False, message="podman is restarting"))
    assert {c["type"]: c for c in reworded["conditions"]}["Ready"]["lastTransitionTime"] == \
        by_type["Ready"]["lastTransitionTime"]


def test_carry_without_a_previous_status_keeps_what_it_has() -> None:
    fresh = status(1000.0)
    assert carry_transition_times(fresh, None) == fresh


def test_first_status_is_sent_then_only_changes_until_the_report_period() -> None:
    reporter = StatusReporter(report_s=300.0)
    first = reporter.computed(status(1000.0))
    assert reporter.due(first, now=0.0)
    reporter.sent(first, now=0.0)
    for tick in range(1, 30):  # every 10 s for 290 s: nothing changed, nothing sent
        assert not reporter.due(reporter.computed(status(1000.0 + 10 * tick)), now=10.0 * tick)
    assert reporter.due(reporter.computed(status(1300.0)), now=300.0)  # the report period passed


def test_a_change_is_sent_at_once_and_restarts_the_period() -> None:
    reporter = StatusReporter(report_s=300.0)
    reporter.sent(reporter.computed(status(1000.0)), now=0.0)
    pressure = reporter.computed(status(1010.0, disk_full="the disk is full"))
    assert reporter.due(pressure, now=10.0)
    reporter.sent(pressure, now=10.0)
    assert not reporter.due(reporter.computed(status(1020.0, disk_full="the disk is full")), now=20.0)
    assert not reporter.due(reporter.computed(status(1300.0, disk_full="the disk is full")), now=300.0)
    assert reporter.due(reporter.computed(status(1310.0, disk_full="the disk is full")), now=310.0)


def test_an_unsent_status_stays_due() -> None:
    """A status computed but not handed to the broker (a publish timeout) is compared with the last one sent, so
    the change is still due at the next pass."""
    reporter = StatusReporter()
    reporter.sent(reporter.computed(status(1000.0)), now=0.0)
    assert reporter.due(reporter.computed(status(1010.0, ready=False, message="down")), now=10.0)
    assert reporter.due(reporter.computed(status(1020.0, ready=False, message="down")), now=20.0)


def test_forget_sends_the_next_status_whatever_it_says() -> None:
    reporter = StatusReporter()
    reporter.sent(reporter.computed(status(1000.0)), now=0.0)
    reporter.forget()
    assert reporter.due(reporter.computed(status(1010.0)), now=10.0)


def test_default_frequencies_are_the_kubelets() -> None:
    settings = EdgeDSettings(node="n1")
    assert (settings.node_status_s, settings.node_status_report_s) == (10.0, 300.0) == (10.0, REPORT_S)


@pytest.mark.parametrize(("update", "report", "flag"), [
    (0.0, 300.0, "--node-status-s"), (-1.0, 300.0, "--node-status-s"), (float("nan"), 300.0, "--node-status-s"),
    (float("inf"), 300.0, "--node-status-s"), (10.0, 5.0, "--node-status-report-s"),
    (10.0, float("nan"), "--node-status-report-s"), (10.0, float("inf"), "--node-status-report-s"),
])
def test_nonsense_frequencies_are_refused_naming_the_flag(update: float, report: float, flag: str) -> None:
    with pytest.raises(ValueError, match=flag):
        check_frequencies(update, report)
    with pytest.raises(ValueError, match=flag):
        EdgeDSettings(node="n1", node_status_s=update, node_status_report_s=report)


def test_frequencies_come_from_the_command_line() -> None:
    loaded = settings_mod.parse(EdgeDSettings, ["--node", "n1", "--node-status-s", "2",
                                                "--node-status-report-s", "60"], prog="edged")
    assert (loaded.node_status_s, loaded.node_status_report_s) == (2.0, 60.0)
    parser = argparse.ArgumentParser()
    settings_mod.add_arguments(parser, EdgeDSettings)
    with pytest.raises(SettingsError, match="--node-status-report-s"):
        settings_mod.load(EdgeDSettings, parser.parse_args(["--node", "n1", "--node-status-report-s", "1"]),
                          environ={})


def test_a_heartbeat_carries_conditions_or_nothing_and_a_bad_one_is_refused_by_field() -> None:
    assert LeaseHeartbeat.parse({}).conditions is None
    assert LeaseHeartbeat.parse(None).conditions is None
    assert LeaseHeartbeat.parse({"spec": {"holderIdentity": "n1"}}).conditions is None  # KubeEdge's Lease body
    found = LeaseHeartbeat.parse({"conditions": [{"type": "Ready", "status": "True"}]}).conditions
    assert found == [{"type": "Ready", "status": "True"}]
    with pytest.raises(BodyError, match=r"body.conditions\[0\].status"):
        LeaseHeartbeat.parse({"conditions": [{"type": "Ready"}]})
    with pytest.raises(BodyError, match="body"):
        LeaseHeartbeat.parse(["not", "a", "mapping"])


def test_the_cloud_puts_conditions_back_only_when_status_reason_or_message_differ() -> None:
    reported = [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "podman is ready",
                 "lastTransitionTime": "2026-12-05T00:00:00Z"}]
    current = [{**reported[0], "lastHeartbeatTime": "2026-12-05T01:00:00Z",
                "lastTransitionTime": "2026-12-04T00:00:00Z"}]
    assert same_conditions(reported, current)  # times aside
    assert not same_conditions(reported, [{**current[0], "status": "Unknown"}])
    assert not same_conditions(reported, [{**current[0], "message": "Kubelet stopped posting node status."}])
    assert not same_conditions(reported, [*current, {"type": "NetworkUnavailable", "status": "False"}])
    assert not same_conditions(reported, None)
