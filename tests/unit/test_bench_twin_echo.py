"""bench twin's echo baseline puts on the broker what EventBus publishes for the same update (edgehive/bench/twin.py):
the same answers, at the same QoS, of about the same size, so that the ratio measures EventBus and DeviceTwin."""

from __future__ import annotations

import json
from pathlib import Path

from edge.devicetwin.store import TwinStore
from edge.devicetwin.twins import DeviceTwin
from edgehive.bench.system import NODE
from edgehive.bench.twin import PROPERTIES, _device, _model, _update
from edgehive.bench.twinecho import answers_as_eventbus
from schemas.resource import ResourceKey

NS = "bench"


def test_the_echo_answers_an_update_as_devicetwin_does(tmp_path: Path) -> None:
    dt = DeviceTwin(TwinStore(tmp_path / "twin.db"), NODE)
    dt.on_cloud(ResourceKey(NS, "devicemodel", "bench"), {**_model(), "metadata": {"name": "bench", "namespace": NS}})
    device = _device("dev-0")
    dt.on_cloud(ResourceKey(NS, "device", "dev-0"), {**device, "metadata": {"name": "dev-0", "namespace": NS}})
    dt.on_device(NS, "dev-0", "twin/update", _update("u0", {f"p{j}": f"0.{j}" for j in range(PROPERTIES)}))
    update = _update("u1", {f"p{j}": f"1.{j}" for j in range(PROPERTIES)})
    real = [p.encoded() for p in dt.on_device(NS, "dev-0", "twin/update", update)]
    assert "code" not in json.loads(real[0].payload)  # taken, not refused
    topic = f"$hw/events/device/{NS}/dev-0/twin/update"
    echoed = answers_as_eventbus(topic)

    assert [(p.topic, p.qos) for p in real] == [(t, q) for t, _payload, q in echoed]
    for answer, (_topic, payload, _qos) in zip(real, echoed, strict=True):
        assert set(json.loads(answer.payload)["twin"]) == set(json.loads(payload)["twin"])
        assert 0.7 < len(payload) / len(answer.payload) < 1.3
