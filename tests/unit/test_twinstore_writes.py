"""TwinStore writes the twins put inside a transaction when the innermost one ends, once per twin: what the file
holds after a commit, and after a savepoint that rolls back, must be what it held when every put was a statement."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge.devicetwin.store import Device, Twin, TwinStore


def on_file(path: Path) -> dict[tuple[str, str], str | None]:
    with sqlite3.connect(path) as db:
        return {(d, p): a for d, p, a in db.execute("SELECT device_id, prop, actual FROM twin")}


@pytest.fixture
def store(tmp_path: Path) -> TwinStore:
    s = TwinStore(tmp_path / "twin.db")
    s.put_device(Device("default/d", "default", "d"))
    s.put_device(Device("default/e", "default", "e"))
    return s


def test_a_twin_put_twice_in_a_transaction_is_on_file_once_it_commits(store: TwinStore) -> None:
    with store.transaction():
        store.put_twin("default/d", Twin("t", actual="1"))
        store.put_twin("default/d", Twin("t", actual="2"))
        assert store.twins("default/d")["t"].actual == "2"  # read back from memory before the write
    assert on_file(store.path) == {("default/d", "t"): "2"}


def test_outside_a_transaction_a_put_is_written_at_once(store: TwinStore) -> None:
    store.put_twin("default/d", Twin("t", actual="1"))
    assert on_file(store.path) == {("default/d", "t"): "1"}


def fail_in_a_savepoint(store: TwinStore) -> None:
    with store.transaction():
        store.put_twin("default/e", Twin("u", actual="undone"))
        store.put_twin("default/d", Twin("t", actual="undone"))
        raise RuntimeError("the item fails")


def test_a_savepoint_that_rolls_back_takes_only_its_own_twins(store: TwinStore) -> None:
    with store.transaction():
        store.put_twin("default/d", Twin("t", actual="kept"))  # the outer level's, not yet written
        with pytest.raises(RuntimeError, match="the item fails"):
            fail_in_a_savepoint(store)
        store.put_twin("default/e", Twin("v", actual="after"))
    assert on_file(store.path) == {("default/d", "t"): "kept", ("default/e", "v"): "after"}
    assert store.twins("default/d")["t"].actual == "kept"


def test_a_removal_after_a_put_in_the_same_transaction_wins(store: TwinStore) -> None:
    with store.transaction():
        store.put_twin("default/d", Twin("t", actual="1"))
        store.put_twin("default/e", Twin("u", actual="1"))
        store.remove_twin("default/d", "t")
        store.remove_device("default/e")
        store.put_twin("default/d", Twin("w", actual="2"))
    assert on_file(store.path) == {("default/d", "w"): "2"}


def test_a_device_never_read_is_read_back_with_what_was_put(store: TwinStore, tmp_path: Path) -> None:
    store.put_twin("default/d", Twin("t", actual="1"))
    store.forget()
    with store.transaction():
        store.put_twin("default/d", Twin("u", actual="2"))  # not read yet: the memory holds nothing of it
        assert sorted(store.twins("default/d")) == ["t", "u"]
