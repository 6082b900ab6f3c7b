"""``edgehive init``, ``gettoken``, ``join`` and ``node``: setting up the cloud and adding edge nodes safely."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from cloud.clusterpki import ClusterPki, member_names
from cloud.kube import Kube, KubeError
from edgehive import nodeadd, status
from edgehive.join import EdgeIdentity, JoinError, join, renew
from edgehive.status import StatusSettings
from runtime import settings
from runtime.pki import cert_info
from schemas import crds

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
    unit = text[-1:]
    if unit not in DURATION_UNITS or not text[:-1].isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30m, 1h or 2d")
    return int(text[:-1]) * DURATION_UNITS[unit]


def _pki(args: argparse.Namespace) -> ClusterPki:
    return ClusterPki(Kube.connect(args.kubeconfig and str(args.kubeconfig), wait_s=0))


def init_main(args: argparse.Namespace) -> int:
    try:
        pki = _pki(args)
        # Every member of the cloud broker: a node's bridge moves to any of them (a NATS cluster).
        created = pki.init([*args.broker_name, *member_names(f"mqtts://{args.cloud_broker}")])
        pki.kube.ensure_crds(crds.manifests())
        ca, _ = pki.ca()
        broker, cloud = pki.broker_identity(), pki.cloud_identity()
        crl = pki.crl()
    except KubeError as exc:
        print(f"edgehive init: {exc}", file=sys.stderr)
        return 1
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    files = {"ca.crt": ca.cert_pem, "broker.crt": broker.cert_pem, "broker.key": broker.key_pem,
             "cloud.crt": cloud.cert_pem, "cloud.key": cloud.key_pem, "crl.pem": crl}
    for name, data in files.items():
        path = out / name
        path.touch(mode=0o600)
        path.write_bytes(data)
    (out / "cloud.yaml").write_text(
        "# Written by edgehive init: settings for cloudhub, edgecontroller and devicecontroller (--config).\n"
        f"broker: mqtts://{args.cloud_broker}\nbroker_ca: {out / 'ca.crt'}\n"
        f"broker_cert: {out / 'cloud.crt'}\nbroker_key: {out / 'cloud.key'}\n")
    print(f"edgehive init: {'made ' + ', '.join(created) if created else 'everything was already there'}; "
          f"CA sha256 {ca.hash[:16]}...; files in {out}\n"
          f"  cloud broker: edgehive broker --listen 0.0.0.0:8883 --tls-cert {out / 'broker.crt'} "
          f"--tls-key {out / 'broker.key'} --tls-ca {out / 'ca.crt'} --client-certs --crl-file {out / 'crl.pem'}\n"
          f"  join endpoint: python -m cloud.joinserver --cloud-broker mqtts://{args.cloud_broker}"
          f"{' --kubeconfig ' + str(args.kubeconfig) if args.kubeconfig else ''}\n"
          "  a token for a node: edgehive gettoken --ttl 1h")
    return 0


def gettoken_main(args: argparse.Namespace) -> int:
    try:
        token = _pki(args).gettoken(args.ttl)
    except KubeError as exc:
        print(f"edgehive gettoken: {exc}", file=sys.stderr)
        return 1
    print(token)
    return 0


def join_main(args: argparse.Namespace) -> int:
    try:
        join(args.cloud, args.token, args.node, args.state_dir, cloud_broker=args.cloud_broker,
             down_qos=args.down_qos)
    except JoinError as exc:
        print(f"edgehive join: {exc}", file=sys.stderr)
        return 1
    print(f"edgehive join: node {args.node} joined; its certificate and configuration are in {args.state_dir}\n"
          f"  start it: edgehive edge --state-dir {args.state_dir}")
    return 0


def renew_main(args: argparse.Namespace) -> int:
    identity = EdgeIdentity(args.state_dir)
    try:
        cloud = args.cloud or identity.endpoint.read_text().strip()
        renew(cloud, identity, identity.node())
    except FileNotFoundError as exc:
        print(f"edgehive renew: {exc.filename} is missing: was this node joined (edgehive join)?", file=sys.stderr)
        return 1
    except JoinError as exc:
        print(f"edgehive renew: {exc}", file=sys.stderr)
        return 1
    print(f"edgehive renew: new certificate in {identity.cert}, valid until "
          f"{cert_info(identity.cert.read_bytes()).not_after:%Y-%m-%d}; connections use it from their next connect")
    return 0


def describe_main(args: argparse.Namespace) -> int:
    try:
        s = settings.load(StatusSettings, args)
        found = status.describe(s, args.name)
    except (KubeError, ValueError) as exc:
        print(f"edgehive node describe: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(found) if s.json else status.render_description(found))
    return 0 if found["registered"] or found["link"] else 1


def node_main(args: argparse.Namespace) -> int:
    try:
        pki = _pki(args)
        if args.action == "list":
            registry = pki.registry()
            rows = [{"node": name, "serial": entry.get("serial"), "not_after": entry.get("not_after"),
                     "joined": entry.get("joined")} for name, entry in sorted(registry.nodes.items())]
            if args.json:
                print(json.dumps({"nodes": rows, "revoked": registry.revoked}))
            else:
                print(f"{'NODE':<24} {'CERTIFICATE EXPIRES':<27} JOINED")
                for row in rows:
                    joined = time.strftime("%Y-%m-%d %H:%M", time.gmtime(int(row["joined"] or 0)))
                    print(f"{row['node']:<24} {row['not_after']!s:<27} {joined}")
                print(f"{len(rows)} nodes; {len(registry.revoked)} revoked certificates")
            return 0
        crl = pki.revoke(args.name)
    except KeyError as exc:
        print(f"edgehive node: {exc.args[0]}", file=sys.stderr)
        return 1
    except KubeError as exc:
        print(f"edgehive node: {exc}", file=sys.stderr)
        return 1
    if args.crl_out:
        args.crl_out.write_bytes(crl)
    print(f"edgehive node: revoked {args.name}'s certificates and join token"
          + (f"; CRL written to {args.crl_out} (the brokers reload it)" if args.crl_out else ""))
    return 0


def status_main(args: argparse.Namespace) -> int:
    try:
        s = settings.load(StatusSettings, args)
        nodes, problem = status.gather(s)
    except (KubeError, ValueError) as exc:
        print(f"edgehive status: {exc}", file=sys.stderr)
        return 1
    print(status.render(nodes, problem, s.json))
    return 0 if problem is None else 1


def add_init_arguments(init: argparse.ArgumentParser) -> None:
    init.add_argument("--kubeconfig", type=Path, help="the cluster (default: in-cluster)")
    init.add_argument("--broker-name", action="append", default=[], metavar="DNS:NAME|IP:ADDR",
                      help="a name edge nodes reach the cloud by (repeatable); localhost and 127.0.0.1 always")
    init.add_argument("--cloud-broker", default="127.0.0.1:8883", metavar="HOST:PORT[,HOST:PORT...]",
                      help="where the cloud components reach the cloud broker, or every member of a NATS cluster; "
                           "the brokers' certificate names each (default 127.0.0.1:8883)")
    init.add_argument("--out", type=Path, default=Path("edgehive-cloud"), help="where to write the cloud's files")
    init.set_defaults(func=init_main)


def add_gettoken_arguments(gettoken: argparse.ArgumentParser) -> None:
    gettoken.add_argument("--kubeconfig", type=Path)
    gettoken.add_argument("--ttl", type=duration, default=3600.0, help="how long it is valid (default 1h)")
    gettoken.set_defaults(func=gettoken_main)


def add_join_arguments(join_parser: argparse.ArgumentParser) -> None:
    join_parser.add_argument("--cloud", required=True, metavar="HOST:PORT", help="the cloud's join endpoint")
    join_parser.add_argument("--token", required=True, help="what edgehive gettoken printed")
    join_parser.add_argument("--node", required=True, help="this node's name")
    join_parser.add_argument("--state-dir", type=Path, default=Path("edgehive-edge"),
                             help="where to keep the identity and the configuration")
    join_parser.add_argument("--cloud-broker", metavar="mqtts://HOST:PORT",
                             help="the cloud broker as this node reaches it (default: what the join endpoint says)")
    join_parser.add_argument("--down-qos", type=int, metavar="0|1",
                             help="QoS of the bridge's down subscription: 0 for a NATS cluster, 1 for mosquitto "
                                  "(default: what the join endpoint says, else 1)")
    join_parser.set_defaults(func=join_main)


def add_status_arguments(status_parser: argparse.ArgumentParser) -> None:
    settings.add_arguments(status_parser, StatusSettings)
    status_parser.set_defaults(func=status_main)


def add_renew_arguments(renew_parser: argparse.ArgumentParser) -> None:
    renew_parser.add_argument("--state-dir", type=Path, default=Path("edgehive-edge"))
    renew_parser.add_argument("--cloud", metavar="HOST:PORT", help="the join endpoint (default: the one joined)")
    renew_parser.set_defaults(func=renew_main)


def add_node_arguments(node: argparse.ArgumentParser) -> None:
    actions = node.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="nodes and their certificates")
    listing.add_argument("--kubeconfig", type=Path)
    listing.add_argument("--json", action="store_true")
    describe = actions.add_parser("describe", help="one node: conditions, link, pods, devices, identity")
    describe.add_argument("name")
    settings.add_arguments(describe, StatusSettings)
    describe.set_defaults(func=describe_main)
    add = actions.add_parser("add", help="make a node's Node before it first registers (CloudHub replicas serve "
                             "only nodes that have one); edgehive join does this through the join endpoint")
    nodeadd.add_arguments(add)
    revoke = actions.add_parser("revoke", help="revoke a node's certificates and token")
    revoke.add_argument("--kubeconfig", type=Path)
    revoke.add_argument("name")
    revoke.add_argument("--crl-out", type=Path, help="write the new CRL here (the brokers' --crl-file)")
    node.set_defaults(func=node_main)
