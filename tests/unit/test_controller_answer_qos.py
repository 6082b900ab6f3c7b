"""The controllers' ``--answer-qos``: their answers to the nodes go to CloudHub at the QoS asked for (0 on NATS,
where the node's outbox sends again what is not answered), and a QoS other than 0 or 1 is refused by name."""

from __future__ import annotations

import pytest

from cloud.devicecontroller.controller import DeviceControllerSettings
from cloud.edgecontroller.controller import EdgeControllerSettings
from cloud.placement import Placement
from schemas import kinds, topics
from schemas.envelope import Envelope, Group, Op
from schemas.resource import ResourceKey
from tests.unit.test_node_resync import FakeBus, NoKube, PodSync

NODE = "edge-1"


@pytest.mark.parametrize("answer_qos", [0, 1])
def test_an_answer_to_a_node_goes_at_the_answer_qos(answer_qos: int) -> None:
    sync = PodSync(NoKube(), Placement(), (kinds.CONFIGMAP,), FakeBus(),  # type: ignore[arg-type]
                   answer_qos=answer_qos)
    status = Envelope(node=NODE, src="edgehub", group=Group.RESOURCE, op=Op.UPDATE,
                      res=ResourceKey(None, kinds.NODESTATUS, NODE))
    send = sync.reply(status.reply("edgecontroller", {"ok": True}))
    assert (send.topic, send.qos) == (topics.inbox(topics.Side.CLOUD, "cloudhub"), answer_qos)


@pytest.mark.parametrize("settings", [EdgeControllerSettings, DeviceControllerSettings])
def test_answer_qos_is_0_or_1(settings: type[EdgeControllerSettings] | type[DeviceControllerSettings]) -> None:
    assert settings(answer_qos=0).answer_qos == 0
    with pytest.raises(ValueError, match="answer_qos must be 0 or 1, not 2"):
        settings(answer_qos=2)


def test_a_sync_refuses_another_answer_qos() -> None:
    with pytest.raises(ValueError, match="answer_qos must be 0 or 1, not -1"):
        PodSync(NoKube(), Placement(), (kinds.CONFIGMAP,), FakeBus(), answer_qos=-1)  # type: ignore[arg-type]
