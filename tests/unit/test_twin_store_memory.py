"""DeviceTwin's store keeps what it reads on every request in memory (edge/devicetwin/store.py): what it returns
is always what the file holds, also after a transaction rolls back, and callers cannot change what it keeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.devicetwin.store import Device, Twin, TwinStore

DEVICE = Device("ns/d1", "ns", "d1", model="m1")


def _fresh(path: Path) -> TwinStore:
    """Another store on the same file: it reads only the file."""
    return TwinStore(path)


def test_writes_are_read_back_from_memory_and_from_the_file(tmp_path: Path) -> None:
    store = TwinStore(tmp_path / "twin.db")
    with store.transaction():
        store.put_device(DEVICE)
        store.put_twins(DEVICE.id, [Twin("a", actual="1"), Twin("b", actual="2")])
    assert store.twins(DEVICE.id) == {"a": Twin("a", actual="1"), "b": Twin("b", actual="2")}
    with store.transaction():
        store.put_twin(DEVICE.id, Twin("a", actual="3"))
        store.remove_twin(DEVICE.id, "b")
        store.set_state(DEVICE.id, "online", "2026-12-05T13:00:00Z")
    assert store.twins(DEVICE.id) == {"a": Twin("a", actual="3")}
    assert store.device(DEVICE.id) == Device("ns/d1", "ns", "d1", model="m1", state="online",
                                             last_online="2026-12-05T13:00:00Z")
    on_file = _fresh(tmp_path / "twin.db")
    assert on_file.twins(DEVICE.id) == store.twins(DEVICE.id)
    assert on_file.device(DEVICE.id) == store.device(DEVICE.id)


def test_a_rolled_back_savepoint_leaves_memory_as_the_file_is(tmp_path: Path) -> None:
    store = TwinStore(tmp_path / "twin.db")
    with store.transaction():
        store.put_device(DEVICE)
        store.put_twin(DEVICE.id, Twin("a", actual="1"))
    assert store.twins(DEVICE.id)["a"].actual == "1"  # now kept in memory
    def bad_message() -> None:
        with store.transaction():  # a savepoint, as DeviceTwin applies each message
            store.put_twin(DEVICE.id, Twin("a", actual="2"))
            store.remove_device(DEVICE.id)
            raise RuntimeError("a bad message")

    with store.transaction():
        with pytest.raises(RuntimeError, match="a bad message"):
            bad_message()
        store.put_twin(DEVICE.id, Twin("b", actual="9"))  # the batch goes on
    assert store.twins(DEVICE.id) == {"a": Twin("a", actual="1"), "b": Twin("b", actual="9")}
    assert store.device(DEVICE.id) == DEVICE
    assert _fresh(tmp_path / "twin.db").twins(DEVICE.id) == store.twins(DEVICE.id)


def test_a_callers_changes_to_the_twins_it_got_are_its_own(tmp_path: Path) -> None:
    store = TwinStore(tmp_path / "twin.db")
    store.put_device(DEVICE)
    store.put_twin(DEVICE.id, Twin("a", actual="1"))
    mine = store.twins(DEVICE.id)
    mine["a"] = Twin("a", actual="changed")
    mine.pop("a")
    assert store.twins(DEVICE.id) == {"a": Twin("a", actual="1")}


def test_a_model_written_again_is_a_new_object_and_a_removed_one_is_gone(tmp_path: Path) -> None:
    store = TwinStore(tmp_path / "twin.db")
    first = {"spec": {"properties": [{"name": "a", "type": "INT"}]}}
    store.put_model("ns/m1", first)
    read = store.model("ns/m1")
    assert read == first
    assert store.model("ns/m1") is read
    first["spec"]["properties"][0]["type"] = "FLOAT"  # the writer's object changing later changes nothing kept
    assert store.model("ns/m1") == {"spec": {"properties": [{"name": "a", "type": "INT"}]}}
    store.put_model("ns/m1", first)
    assert store.model("ns/m1") is not read
    assert store.model("ns/m1") == first
    store.put_model("ns/m1", None)
    assert store.model("ns/m1") is None


def test_a_twins_copy_has_its_changes_and_shows_itself_not_the_original() -> None:
    before = Twin("a", actual="1", kind="int")
    shown_before = before.shown()
    assert before.shown() is shown_before  # kept with the twin
    after = before.but(actual="2", actual_ts=5, edge_version=1)
    assert after == Twin("a", actual="2", actual_ts=5, kind="int", edge_version=1)
    assert after.shown()["actual"] == {"value": "2", "metadata": {"timestamp": 5}}
    assert shown_before["actual"] == {"value": "1", "metadata": {}}
    assert before.but() == before
    assert hash(before.but()) == hash(before)


def test_a_copy_with_a_field_twins_do_not_have_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match="Twin has no field colour"):
        Twin("a").but(colour="red")
