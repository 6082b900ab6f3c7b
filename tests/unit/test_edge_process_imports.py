"""EdgeD and edgestream load no podman-py (issue 19, the edge node's footprint): they speak to podman through
edge.podmanclient, on the standard library. podman-py brought requests, urllib3, idna, charset_normalizer,
certifi and rich (some 220 modules, ~7 MB of every forked edge process).

Each process is the real ``python -m`` command up to its argument parser (``--help``), in a fresh interpreter
that prints ``sys.modules`` as it exits (tests/unit/test_broker_process_imports.py), so imports made while
running the module count too, not only the static ones lint-imports checks.
"""

from __future__ import annotations

import pytest

from tests.unit.test_broker_process_imports import _loaded, _under

PODMAN_PY = ("podman", "requests", "urllib3", "idna", "charset_normalizer", "certifi", "rich", "tarfile")


@pytest.mark.parametrize("module", ["edge.edged", "edge.stream"])
def test_edge_process_loads_no_podman_py(module: str) -> None:
    loaded = _loaded(module)
    assert "edge.podmanclient.client" in loaded or module == "edge.stream"
    assert _under(loaded, PODMAN_PY) == []
