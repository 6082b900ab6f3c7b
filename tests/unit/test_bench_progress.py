"""Benchmark progress goes to stderr, one line per scenario and phase; stdout keeps the report alone (``--json``)."""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgehive.bench import all as every
from edgehive.bench.cli import _run_bench
from edgehive.bench.harness import BenchError, progress_printer

LINE = re.compile(r"^bench (?P<scenario>[a-z]+) \[ *(?P<seconds>\d+\.\d) s\]: (?P<text>.*)$")


def test_the_helper_writes_one_line_on_stderr_and_nothing_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    say = progress_printer("cloud")
    say("creating 2000 objects")
    out, err = capsys.readouterr()
    assert out == ""
    (line,) = err.splitlines()
    found = LINE.match(line)
    assert found is not None, line
    assert (found["scenario"], found["text"]) == ("cloud", "creating 2000 objects")
    assert float(found["seconds"]) < 60


def test_a_disabled_helper_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    progress_printer("cloud", enabled=False)("quiet")
    assert capsys.readouterr() == ("", "")


@dataclass(frozen=True)
class Figures:
    rate: float


def _measure(progress: bool) -> Figures:
    say = progress_printer("fast", progress)
    say("phase one")
    say("phase two")
    return Figures(1.5)


def _fail(progress: bool) -> Figures:
    progress_printer("broken", progress)("starting")
    raise BenchError("the broker did not start")


def test_bench_all_json_prints_progress_on_stderr_and_only_the_report_on_stdout(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    shown: list[Figures] = []
    monkeypatch.setattr(every, "SCENARIOS", (
        every.Scenario("fast", _measure, lambda r, _json: shown.append(r), lambda r: f"rate {r.rate}"),
        every.Scenario("broken", _fail, lambda r, _json: shown.append(r), lambda r: "never")))
    report, rows = every.bench_all(readable=False)
    every.write_report(report, rows, tmp_path / "report.json", as_json=True)
    out, err = capsys.readouterr()
    printed = json.loads(out)
    goals = printed.pop("goals")
    assert printed == {"fast": {"rate": 1.5}, "broken": {"error": "the broker did not start"}}
    assert {v["met"] for v in goals.values()} == {None}  # neither scenario has a figure a goal reads
    assert shown == []  # the readable reports are not printed with --json
    lines = [LINE.match(line) for line in err.splitlines()]
    assert all(lines), err
    assert [(m["scenario"], re.sub(r"\d+ s", "N s", m["text"])) for m in lines if m] == [
        ("all", "fast (1 of 2) starting"), ("fast", "phase one"), ("fast", "phase two"), ("all", "fast done in N s"),
        ("all", "broken (2 of 2) starting"), ("broken", "starting"),
        ("all", "broken FAILED after N s: the broker did not start")]


def test_one_benchmark_with_json_ends_its_progress_with_a_done_line(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(scenario="fast", json=True)
    assert _run_bench(lambda: _measure(True), lambda r, as_json: print(json.dumps({"rate": r.rate})), args) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == {"rate": 1.5}
    assert [m["text"] for m in map(LINE.match, err.splitlines()) if m] == ["phase one", "phase two", "done"]
