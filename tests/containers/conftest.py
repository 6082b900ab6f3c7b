"""A failed compose test reports what the stack's components logged: their containers are gone after the run."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from edgehive.compose import HA, ComposeStack

# The components a message crosses from the API server to the edge node and back, and the webhook the API server
# calls at a pod's creation.
LOGGED = ("edgecontroller", "cloudhub", "cloud-broker", "edge-1-bridge", "edge-1-edgehub", "edge-1-metamanager",
          "edge-1-edged", "admission")
HA_LOGGED = ("cloud-broker-2", "cloud-broker-3", "cloudhub-2", "cloudhub-3", "edgecontroller-2")
"""compose.ha.yml's services too, when the stack runs it."""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport,
                                                                                        pytest.TestReport]:
    report = yield
    stack = getattr(item, "funcargs", {}).get("stack")
    if report.when == "call" and report.failed and isinstance(stack, ComposeStack):
        for service in (*LOGGED, *(HA_LOGGED if HA in stack.overrides else ())):
            report.sections.append((f"podman logs --tail 40 {service}", stack.logs(service)))
    return report
