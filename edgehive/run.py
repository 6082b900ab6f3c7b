"""``edgehive run COMPONENT [ARGS...]``: one component in the foreground, as a container runs it.

The image holds every component and the command picks one (as ``keadm`` or a
Greengrass nucleus image would): the components in their own modules run in this
process with their own flags; the brokers and the local API server, which are other
programs wrapped with a health file and users from the environment, are in
``edgehive.services``. Nothing else is imported before the component's own module: a
component started here loads what ``python -m`` loads for it (tests/unit/test_run_imports.py).
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Sequence

MODULES = {
    "cloudhub": "cloud.cloudhub",
    "edgecontroller": "cloud.edgecontroller",
    "devicecontroller": "cloud.devicecontroller",
    "router": "cloud.router",
    "admission": "cloud.admission",
    "stream": "cloud.stream",
    "metricsapi": "cloud.metricsapi",
    "edgehub": "edge.edgehub",
    "metamanager": "edge.metamanager",
    "edged": "edge.edged",
    "eventbus": "edge.eventbus",
    "devicetwin": "edge.devicetwin",
    "dmi": "edge.dmi",
    "edgestream": "edge.stream",
    "bridge": "broker.bridge",
}
SERVICES = ("apiserver", "broker")
COMPONENTS = sorted([*MODULES, *SERVICES])


def run(component: str, args: Sequence[str]) -> int:
    if component in SERVICES:
        return _service(component, args)
    module = MODULES.get(component)
    if module is None:
        print(f"edgehive run: no component {component!r}; choose one of: {', '.join(COMPONENTS)}", file=sys.stderr)
        return 2
    sys.argv = [f"edgehive run {component}", *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


def _service(component: str, args: Sequence[str]) -> int:
    # amqtt, mosquitto's supervisor, the local API server: loaded only for these two
    from edgehive import services  # noqa: PLC0415

    main = services.broker_main if component == "broker" else services.apiserver_main
    return main(args)
