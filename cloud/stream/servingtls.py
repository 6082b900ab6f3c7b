"""Where the stream server's TLS comes from: its serving certificate, and the CA of the one client it accepts.

The API server calls a kubelet with its kubelet client certificate (``--kubelet-client-certificate``; kubeadm names
it CN ``kube-apiserver-kubelet-client``, k3s ``system:apiserver``), and checks the kubelet's serving certificate
only when it was started with ``--kubelet-certificate-authority`` (kubeadm does not set it, so any certificate
does; k3s and ``edgehive up`` do). So the serving certificate is, the first of:

1. ``--tls-cert``/``--tls-key``: one the user made, for the name the API server dials;
2. ``--serving-ca``/``--serving-ca-key``: issued at each start from that CA, the one the API server's
   ``--kubelet-certificate-authority`` names (kubeadm's ``/etc/kubernetes/pki/ca.crt``, k3s's ``server-ca.crt``);
3. issued at each start from the cluster's edgehive CA (cloud/clusterpki.py; made here as ``edgehive init`` makes
   it when missing): enough for an API server that does not check kubelets' certificates.

The client CA is ``--client-ca``, or else the API server's own client CA as it publishes it (ConfigMap
kube-system/extension-apiserver-authentication), which signs its kubelet client certificate on kubeadm, k3s
and the embedded stack alike. Issued certificates and a fetched CA are written to a private temporary folder
(Python's ssl loads certificates from files only) that goes when the server closes.
"""

from __future__ import annotations

import ipaddress
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cloud.clusterpki import ClusterPki
from cloud.kube import Kube
from cloud.stream.https import ServerTls
from runtime.pki import CertificateAuthority

log = logging.getLogger(__name__)

SERVING_CN = "edgehive-stream"
ALWAYS_NAMES = ("DNS:localhost", "IP:127.0.0.1")


@dataclass(frozen=True)
class TlsSources:
    """The TLS settings as given (empty: not given)."""

    tls_cert: str = ""
    tls_key: str = ""
    serving_ca: str = ""
    serving_ca_key: str = ""
    client_ca: str = ""
    server_names: str = ""
    """Comma-separated names the serving certificate carries: ``DNS:name``, ``IP:address`` or a bare one."""
    listen_host: str = ""
    client_cns: str = ""
    """Comma-separated CNs a client certificate may have."""

    def check(self) -> None:
        """Refuse half-given pairs and names that are not names, before anything starts."""
        for a, b in (("tls_cert", "tls_key"), ("serving_ca", "serving_ca_key")):
            if bool(getattr(self, a)) != bool(getattr(self, b)):
                raise ValueError(f"--{a.replace('_', '-')} and --{b.replace('_', '-')} go together")
        if self.tls_cert and self.serving_ca:
            raise ValueError("--tls-cert and --serving-ca are two ways to the serving certificate: give one")
        self.names()
        if not self.cns():
            raise ValueError("--client-cn names no CN")

    def names(self) -> tuple[str, ...]:
        given = [n.strip() for n in self.server_names.split(",") if n.strip()]
        if not given and self.listen_host not in ("", "0.0.0.0", "::"):
            given = [self.listen_host]
        return tuple(dict.fromkeys([*(san(n) for n in given), *ALWAYS_NAMES]))

    def cns(self) -> frozenset[str]:
        return frozenset(cn.strip() for cn in self.client_cns.split(",") if cn.strip())


def san(name: str) -> str:
    """``name`` as a subjectAltName entry: kept when it says DNS: or IP:, else by its form."""
    kind, sep, value = name.partition(":")
    if sep and kind in ("DNS", "IP"):
        if kind == "IP":
            ipaddress.ip_address(value)  # ValueError names it
        elif not value:
            raise ValueError(f"server name {name!r} is empty")
        return name
    try:
        ipaddress.ip_address(name)
    except ValueError:
        if not name or any(c in name for c in " /,:"):
            raise ValueError(f"server name {name!r} is neither DNS:NAME, IP:ADDRESS, a host name nor an address") \
                from None
        return f"DNS:{name}"
    return f"IP:{name}"


def server_tls(sources: TlsSources, kube: Kube, folder: Path) -> ServerTls:
    """The ServerTls to serve with, its files in ``folder`` where they had to be made."""
    if sources.tls_cert:
        cert, key = sources.tls_cert, sources.tls_key
        origin = f"the given certificate {cert}"
    else:
        if sources.serving_ca:
            ca = CertificateAuthority(Path(sources.serving_ca).read_bytes(), Path(sources.serving_ca_key).read_bytes())
            origin = f"a certificate issued from {sources.serving_ca}"
        else:
            ca = ClusterPki(kube).ensure_ca()
            origin = "a certificate issued from the cluster's edgehive CA"
        key_pem, cert_pem = ca.issue(SERVING_CN, server_names=sources.names())
        cert, key = _write(folder, "tls.crt", cert_pem), _write(folder, "tls.key", key_pem)
        origin += f" for {', '.join(sources.names())}"
    if sources.client_ca:
        client_ca = sources.client_ca
        accepted = client_ca
    else:
        client_ca = _write(folder, "client-ca.crt", ClusterPki(kube).apiserver_client_ca())
        accepted = "the API server's client CA (kube-system/extension-apiserver-authentication)"
    log.info("serving %s; accepting client certificates from %s with CN %s", origin, accepted,
             " or ".join(sorted(sources.cns())))
    return ServerTls(cert, key, client_ca, sources.cns())


def _write(folder: Path, name: str, data: bytes) -> str:
    path = folder / name
    path.touch(mode=0o600)
    path.write_bytes(data)
    return str(path)


def private_folder() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="edgehive-stream-")
