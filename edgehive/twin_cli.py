"""``edgehive twin get|set NAMESPACE/DEVICE [PROP=VALUE ...]``: a device's twin, read and desired, from the cluster.

The desired values are the Device's ``spec.properties[].desired``; the reported ones are
what its edge node last confirmed, in ``status.twins``. Setting writes the Device (with
its resourceVersion, so a concurrent change is not overwritten) and DeviceController
carries it to the edge, where the device gets a delta.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cloud.kube import Kube, KubeError
from schemas import kinds
from schemas.devices import Device
from schemas.kubeobj import meta, node_name, spec_of
from schemas.reports import DeviceStatusReport


def _target(text: str) -> tuple[str, str]:
    namespace, sep, name = text.partition("/")
    if not sep or not namespace or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: write NAMESPACE/DEVICE")
    return namespace, name


def _assignment(text: str) -> tuple[str, str]:
    prop, sep, value = text.partition("=")
    if not sep or not prop:
        raise argparse.ArgumentTypeError(f"{text!r}: write PROPERTY=VALUE")
    return prop, value


def twin_rows(device: dict[str, Any]) -> list[dict[str, Any]]:
    desired = {p.name: p.desired for p in Device.view(device).properties}
    reported = {t.property_name: t for t in DeviceStatusReport.view(device).twins}
    rows = []
    for prop in sorted(set(desired) | set(reported)):
        seen = reported.get(prop)
        rows.append({"property": prop, "desired": desired.get(prop), "reported": seen.reported if seen else None,
                     "reported_at": seen.reported_metadata.get("timestamp") if seen else None})
    return rows


def twin_main(args: argparse.Namespace) -> int:
    namespace, name = args.device
    try:
        kube = Kube.connect(args.kubeconfig and str(args.kubeconfig), wait_s=0)
        device = kube.get_custom(kinds.DEVICE, namespace, name)
        if device is None:
            print(f"edgehive twin: no Device {namespace}/{name} (kubectl get devices -A lists them)", file=sys.stderr)
            return 1
        if args.action == "set":
            properties = list(spec_of(device).get("properties") or [])
            known = {p.name for p in Device.view(device).properties}
            for prop, _value in args.values:
                if prop not in known:
                    print(f"edgehive twin: Device {namespace}/{name} has no property {prop!r} "
                          f"(it has: {', '.join(sorted(str(k) for k in known))})", file=sys.stderr)
                    return 1
            wanted = dict(args.values)
            for p in properties:
                if p.get("name") in wanted:
                    p["desired"] = {**(p.get("desired") or {}), "value": wanted[p["name"]]}
            device = kube.patch_custom(kinds.DEVICE, namespace, name, {
                "metadata": {"resourceVersion": meta(device).resource_version},
                "spec": {"properties": properties}})
    except KubeError as exc:
        hint = "; someone changed it meanwhile, run it again" if exc.status == 409 else ""
        print(f"edgehive twin: {exc}{hint}", file=sys.stderr)
        return 1
    rows = twin_rows(device)
    if args.json:
        print(json.dumps({"device": f"{namespace}/{name}", "node": node_name(device),
                          "state": DeviceStatusReport.view(device).state, "twins": rows}))
        return 0
    print(f"{'PROPERTY':<20} {'DESIRED':<16} {'REPORTED':<16} REPORTED AT")
    for row in rows:
        print(f"{row['property']:<20} {row['desired'] or '-':<16} {row['reported'] or '-':<16} "
              f"{row['reported_at'] or '-'}")
    return 0


def add_arguments(twin: argparse.ArgumentParser) -> None:
    actions = twin.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (("get", "desired and reported values"), ("set", "set desired values")):
        sub = actions.add_parser(action, help=text)
        sub.add_argument("device", type=_target, metavar="NAMESPACE/DEVICE")
        if action == "set":
            sub.add_argument("values", type=_assignment, nargs="+", metavar="PROPERTY=VALUE")
        sub.add_argument("--kubeconfig", type=Path)
        sub.add_argument("--json", action="store_true")
        sub.set_defaults(func=twin_main)
