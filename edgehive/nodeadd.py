"""``edgehive node add NAME``: make an edge node's Node before its first registration.

CloudHub replicas serve the nodes that have a Node with the edge role label and those whose bridges said hello
(cloud/cloudhub/replica.py), so a node whose bridge is too old to say hello is heard only once its Node exists.
``edgehive join`` gets one from the join endpoint; a node set up without joining gets it from this command. ``--wait-s``
keeps trying while the API server does not answer, so a compose service can run it beside a starting API
server; a Node that exists already is left as it is.
"""

from __future__ import annotations

import argparse
import sys
import time

from cloud.joinserver.nodeobject import ensure_edge_node
from cloud.kube import Kube, KubeError
from schemas.names import is_node_name

RETRY_S = 2.0


def add_arguments(add: argparse.ArgumentParser) -> None:
    add.add_argument("name", help="the edge node's name")
    add.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster)")
    add.add_argument("--kube-server", help="API server URL to use instead of the kubeconfig's")
    add.add_argument("--wait-s", type=float, default=0.0,
                     help="keep trying this long while the API server does not answer (default: try once)")
    add.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    if not is_node_name(args.name):
        print(f"edgehive node add: {args.name!r} is not a node name (a DNS-1123 subdomain)", file=sys.stderr)
        return 2
    deadline = time.monotonic() + args.wait_s
    try:
        kube = Kube.connect(args.kubeconfig, args.kube_server, wait_s=max(0.0, args.wait_s))
    except KubeError as exc:
        print(f"edgehive node add: {exc}", file=sys.stderr)
        return 1
    while True:
        try:
            created = ensure_edge_node(kube, args.name)
            break
        except KubeError as exc:
            # Unreachable, or not ready yet (429, 5xx): again until the deadline; a refusal (403, 422) is final.
            if not (exc.status in {0, 429} or exc.status >= 500) or time.monotonic() >= deadline:
                print(f"edgehive node add: {exc}", file=sys.stderr)
                return 1
            time.sleep(RETRY_S)
    print(f"edgehive node add: {'created' if created else 'kept the existing'} Node {args.name}")
    return 0
