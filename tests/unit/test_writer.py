"""EdgeController's writer (cloud/writer.py) and the caches' packed objects (cloud/packed.py)."""

from __future__ import annotations

import threading

from cloud.packed import Packed, slim
from cloud.writer import KeyedWriter
from tests.fixtures.processes import wait_until


def test_one_write_at_a_time_per_key_in_order_and_a_queued_one_replaced() -> None:
    writer = KeyedWriter(4, "test")
    gate = threading.Event()
    done: list[str] = []
    acked: list[str] = []
    running: set[str] = set()
    overlap: list[str] = []
    lock = threading.Lock()

    def write(key: str, label: str, wait: bool = False) -> bool:
        with lock:
            if key in running:
                overlap.append(label)
            running.add(key)
        if wait:
            gate.wait(10)
        with lock:
            running.discard(key)
            done.append(label)
        return True

    try:
        writer.submit("a", lambda: write("a", "a1", wait=True))
        wait_until(lambda: writer.backlog == 0, timeout=5, what="a1 to start")
        writer.submit("a", lambda: write("a", "a2"), lambda: acked.append("a2"))
        writer.submit("a", lambda: write("a", "a3"), lambda: acked.append("a3"))  # replaces a2, not yet started
        writer.submit("b", lambda: write("b", "b1"))
        wait_until(lambda: "b1" in done, timeout=5, what="b's write, not held up by a's")
        assert "a3" not in done, "a's next write waits for the running one"
        gate.set()
        wait_until(lambda: "a3" in done, timeout=5, what="a's newest write")
        assert done == ["b1", "a1", "a3"]
        assert acked == ["a2"], "the replaced write is answered with the newer one's outcome"
        assert not overlap
        assert writer.replaced == 1
    finally:
        gate.set()
        writer.close()


def test_writes_of_many_keys_from_many_threads_are_all_written_by_few_workers() -> None:
    """No write is left queued with a worker asleep: a worker is woken only for a new key, or for the next write
    of the key a write just ended."""
    writer = KeyedWriter(3, "test")
    written: list[tuple[int, int]] = []
    lock = threading.Lock()

    def write(key: int, n: int) -> bool:
        with lock:
            written.append((key, n))
        return True

    def submitter(first: int) -> None:
        for n in range(50):
            for key in range(first, first + 10):
                writer.submit(key, lambda k=key, i=n: write(k, i), tag=n)  # type: ignore[misc]

    try:
        threads = [threading.Thread(target=submitter, args=(first,)) for first in (0, 10, 20, 30)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wait_until(lambda: writer.backlog == 0 and writer.written + writer.replaced == 40 * 50, timeout=10,
                   what="every write done or replaced")
        last = {key: max(n for k, n in written if k == key) for key in range(40)}
        assert last == {key: 49 for key in range(40)}, "each key's last write is written"
    finally:
        writer.close()


def test_a_replaced_write_is_not_acked_when_the_newer_one_fails() -> None:
    writer = KeyedWriter(1, "test")
    gate = threading.Event()
    acked: list[str] = []
    finished = threading.Event()
    try:
        writer.submit("x", lambda: gate.wait(10))
        writer.submit("y", lambda: True, lambda: acked.append("y0"))
        writer.submit("y", lambda: False, lambda: acked.append("y1"))

        def last() -> bool:
            finished.set()
            return True

        writer.submit("z", last)
        gate.set()
        assert finished.wait(5)
        wait_until(lambda: writer.written == 3, timeout=5, what="three writes")
        assert acked == []
    finally:
        gate.set()
        writer.close()


def test_a_write_of_another_kind_is_queued_behind_not_replaced() -> None:
    writer = KeyedWriter(2, "test")
    gate = threading.Event()
    done: list[str] = []

    def write(label: str) -> bool:
        done.append(label)
        return True

    try:
        writer.submit("n", lambda: gate.wait(10) and write("running"), tag="status")
        wait_until(lambda: writer.backlog == 0, timeout=5, what="the first write to start")
        writer.submit("n", lambda: write("register"), tag="register")
        writer.submit("n", lambda: write("status-1"), tag="status")
        writer.submit("n", lambda: write("status-2"), tag="status")  # replaces status-1, not the registration
        assert writer.backlog == 2
        gate.set()
        wait_until(lambda: len(done) == 3, timeout=5, what="the node's writes")
        assert done == ["running", "register", "status-2"]
    finally:
        gate.set()
        writer.close()


def test_a_failing_write_does_not_stop_the_writer() -> None:
    writer = KeyedWriter(1, "test")
    after = threading.Event()
    try:
        def fails() -> bool:
            raise RuntimeError("the API server said no")

        def succeeds() -> bool:
            after.set()
            return True

        writer.submit("k", fails)
        writer.submit("k", succeeds)
        assert after.wait(5)
    finally:
        writer.close()


def test_packed_objects_drop_managed_fields_and_decode_to_fresh_copies() -> None:
    pod = {"metadata": {"name": "p-1", "uid": "u-1", "resourceVersion": "42", "managedFields": [{"manager": "x"}]},
           "spec": {"containers": [{"name": "main", "imagePullPolicy": "Always"}]}}
    packed = Packed.of(slim(pod))
    assert (packed.rv, packed.uid) == ("42", "u-1")
    copy = packed.obj()
    assert copy == {"metadata": {"name": "p-1", "uid": "u-1", "resourceVersion": "42"},
                    "spec": {"containers": [{"name": "main", "imagePullPolicy": "Always"}]}}
    copy["spec"]["containers"].clear()
    assert packed.obj()["spec"]["containers"], "a reader's change does not reach the cache"
    assert Packed.of({"metadata": {"name": "cm"}}).rv == "0"
