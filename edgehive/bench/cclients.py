"""C MQTT clients (mosquitto-clients' ``mosquitto_pub`` and ``mosquitto_sub``) as a benchmark's load generator.

A load generator written in Python costs the machine about as much per message as the component it drives:
``bench twin``'s device client took 105 us of CPU per update (publish at QoS 1, its PUBACK, the result),
0.4-0.6 of this machine's two cores, in the baseline and in the measured phase alike, and so capped both by
what it left of the machine rather than by the broker or the components. ``mosquitto_pub -l`` publishes a line
of its stdin per message from C (65,000 messages/s through mosquitto here, against about 6,000 from our
Python client); ``mosquitto_sub -C N`` exits once N messages have come.

The broker's credentials go in the clients' own option files (``$XDG_CONFIG_HOME/mosquitto_pub``), not on
their command lines, where any user could read them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from edgehive.bench.harness import BenchError, wait_until
from edgehive.deathsig import die_with_parent
from runtime.url import BrokerUrl

PUB, SUB = "mosquitto_pub", "mosquitto_sub"
LINE_BUFFERED = ["stdbuf", "-oL"]
"""The clients write their debug lines with stdio, which holds them back in a file until it exits: line by line,
their logs say at once that they have connected and subscribed."""


def require_clients() -> None:
    missing = [name for name in (PUB, SUB, LINE_BUFFERED[0]) if shutil.which(name) is None]
    if missing:
        raise BenchError(f"{' and '.join(missing)} not found: install mosquitto-clients (scripts/setup does)")


def client_options(work: Path, url: BrokerUrl) -> dict[str, str]:
    """The environment under which both clients reach ``url``: an XDG config directory in ``work`` holding
    their option files (only the owner may read them). TLS is refused: the benchmarks' brokers are plain
    MQTT on loopback, and a client that silently spoke plain MQTT to a TLS port would measure nothing."""
    if url.tls:
        raise BenchError(f"the C load generator speaks plain MQTT only, not to {url}")
    if any("\n" in (value or "") for value in (url.host, url.username, url.password)):
        raise BenchError("a broker host, user or password with a line break cannot go in the clients' option files")
    config = work / "mosquitto-clients"
    config.mkdir(mode=0o700, exist_ok=True)
    options = [f"-h {url.host}", f"-p {url.port}", "-V mqttv311"]
    if url.username:
        options.append(f"-u {url.username}")
    if url.password:
        options.append(f"-P {url.password}")
    for name in (PUB, SUB):
        path = config / name
        path.touch(mode=0o600)
        path.write_text("\n".join(options) + "\n")
    return {**os.environ, "XDG_CONFIG_HOME": str(config)}


class Subscriber:
    """``mosquitto_sub`` on ``topic_filter`` at QoS 0 until ``count`` messages have come. Its debug lines go to
    a file (a pipe nobody read would stop it): they say when it has subscribed, and how many messages came."""

    def __init__(self, env: dict[str, str], work: Path, topic_filter: str, count: int, name: str) -> None:
        self.log = work / f"{name}.log"
        with self.log.open("wb") as out:
            argv = [*LINE_BUFFERED, SUB, "-d", "-q", "0", "-t", topic_filter, "-C", str(count)]
            self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         preexec_fn=die_with_parent)  # noqa: PLW1509 - only prctl
        wait_until(lambda: b"Subscribed (mid" in self.log.read_bytes() or self.proc.poll() is not None, 20,
                   f"{SUB} to subscribe (see {self.log})")
        if self.proc.poll() is not None:
            raise BenchError(f"{SUB} exited with {self.proc.returncode} before subscribing (see {self.log})")

    def received(self) -> int:
        return self.log.read_bytes().count(b"received PUBLISH")

    def wait(self, timeout: float) -> bool:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return self.proc.returncode == 0

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class Publishers:
    """One ``mosquitto_pub -l`` per topic, each connected before ``publish`` is called (its CONNACK in its log),
    so that the clients' start-up is not timed."""

    def __init__(self, env: dict[str, str], work: Path, topic_list: Sequence[str], qos: int, name: str) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        try:
            for index, topic in enumerate(topic_list):
                log = work / f"{name}-{index}.log"
                with log.open("wb") as out:
                    argv = [*LINE_BUFFERED, PUB, "-d", "-q", str(qos), "-t", topic, "-l"]
                    self.procs.append(subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=out,
                                                       stderr=subprocess.STDOUT,
                                                       preexec_fn=die_with_parent))  # noqa: PLW1509 - only prctl
                self.logs.append(log)
            wait_until(self._connected, 20, f"{PUB} to connect (see {work}/{name}-*.log)")
        except BaseException:
            self.close()
            raise

    def _connected(self) -> bool:
        for proc, log in zip(self.procs, self.logs, strict=True):
            if proc.poll() is not None:
                raise BenchError(f"{PUB} exited with {proc.returncode} before connecting (see {log})")
        return all(b"received CONNACK (0)" in log.read_bytes() for log in self.logs)

    def publish(self, lines: Sequence[bytes]) -> float:
        """Hand each publisher its lines (``lines[i]`` to the i-th, newline-separated messages) at once, from a
        thread each (a pipe holds 64 KiB, and each publisher reads at its own pace); the time it began."""
        began = time.perf_counter()
        feeders = [threading.Thread(target=self._feed, args=(proc, data), daemon=True)
                   for proc, data in zip(self.procs, lines, strict=True)]
        for feeder in feeders:
            feeder.start()
        for feeder in feeders:
            feeder.join()
        return began

    @staticmethod
    def _feed(proc: subprocess.Popen[bytes], data: bytes) -> None:
        assert proc.stdin is not None
        try:
            proc.stdin.write(data)
            proc.stdin.close()  # the end of its messages: it publishes what it has read, then exits
        except BrokenPipeError:
            pass  # it died: the count of results says so

    def close(self) -> None:
        for proc in self.procs:
            if proc.stdin is not None and not proc.stdin.closed:
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
