"""A failed compose test reports what the stack's components logged: their containers are gone after the run."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from edgehive.compose import ComposeStack

# The components a message crosses from the API server to the edge node and back.
LOGGED = ("edgecontroller", "cloudhub", "cloud-broker", "edge-1-bridge", "edge-1-edgehub", "edge-1-metamanager",
          "edge-1-edged")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport,
                                                                                        pytest.TestReport]:
    report = yield
    stack = getattr(item, "funcargs", {}).get("stack")
    if report.when == "call" and report.failed and isinstance(stack, ComposeStack):
        for service in LOGGED:
            report.sections.append((f"podman logs --tail 40 {service}", stack.logs(service)))
    return report
