"""``edgehive join``: an edge node gets its identity from the cloud with a join token.

1. Fetch the cluster CA from the join endpoint without trusting the connection, and
   refuse it unless its SHA-256 is the one in the token: the token is the trust anchor,
   so a man in the middle (or the wrong cloud) is caught before anything is sent.
2. Make a key and a CSR here (the key never leaves this machine) and send the CSR with the
   token over HTTPS, now verified against that CA.
3. Write the CA, the certificate, the key (mode 600) and the edge configuration.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgehive.errors import EdgehiveError
from runtime.address import Address
from runtime.pki import ca_hash, cert_info, new_key_and_csr
from runtime.qos import check_qos
from runtime.url import BrokerUrl
from schemas.jointoken import JoinToken, TokenError
from schemas.names import is_node_name


class JoinError(EdgehiveError, RuntimeError):
    """The join failed; the message says why and what to do."""


@dataclass(frozen=True)
class EdgeIdentity:
    """Where a joined node keeps its identity, under its state directory."""

    state_dir: Path

    @property
    def ca(self) -> Path:
        return self.state_dir / "pki" / "ca.crt"

    @property
    def cert(self) -> Path:
        return self.state_dir / "pki" / "node.crt"

    @property
    def key(self) -> Path:
        return self.state_dir / "pki" / "node.key"

    @property
    def config(self) -> Path:
        return self.state_dir / "edge.yaml"

    @property
    def endpoint(self) -> Path:
        """The join endpoint HOST:PORT, for renewals."""
        return self.state_dir / "pki" / "endpoint"

    def node(self) -> str:
        return cert_info(self.cert.read_bytes()).subject_cn

    def remaining_fraction(self, now: datetime | None = None) -> float:
        """How much of the certificate's life is left (0 when expired)."""
        info = cert_info(self.cert.read_bytes())
        life = (info.not_after - info.not_before).total_seconds()
        left = (info.not_after - (now or datetime.now(UTC))).total_seconds()
        return max(0.0, left / life) if life > 0 else 0.0


def _request(url: str, context: ssl.SSLContext, body: dict[str, Any] | None, timeout: float) -> bytes:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, context=context, timeout=timeout) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        try:
            reason = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            reason = exc.reason
        raise JoinError(f"the cloud refused: {reason}") from exc
    except ssl.SSLCertVerificationError as exc:
        raise JoinError(f"the join endpoint's certificate does not fit ({exc.verify_message}); the address "
                        "must be one of the names given to edgehive init --broker-name") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLCertVerificationError):
            raise JoinError(f"the join endpoint's certificate does not fit ({exc.reason.verify_message}); the "
                            "address must be one of the names given to edgehive init --broker-name") from exc
        raise JoinError(f"cannot reach {url} ({exc.reason}); check the address and that the cloud's join "
                        "endpoint (python -m cloud.joinserver) runs") from exc
    except OSError as exc:
        raise JoinError(f"cannot reach {url} ({getattr(exc, 'reason', exc)}); check the address and that "
                        "the cloud's join endpoint (python -m cloud.joinserver) runs") from exc


def fetch_ca(cloud: str, token: JoinToken, timeout: float = 20.0) -> bytes:
    """The cluster CA from ``cloud``, accepted only if it is the one the token names."""
    blind = ssl.create_default_context()
    blind.check_hostname = False
    blind.verify_mode = ssl.CERT_NONE  # nothing is trusted yet: the hash check below is the trust
    ca_pem = _request(f"https://{cloud}/ca.crt", blind, None, timeout)
    try:
        found = ca_hash(ca_pem)
    except ValueError as exc:
        raise JoinError(f"{cloud} did not answer with a certificate: is it the join endpoint?") from exc
    if found != token.ca_hash:
        raise JoinError(f"the CA at {cloud} (sha256 {found[:16]}...) is not the one the token names "
                        f"({token.ca_hash[:16]}...): the token is for another cluster, or something between "
                        "you and the cloud is not the cloud")
    return ca_pem


def join(cloud: str, token_text: str, node: str, state_dir: Path, timeout: float = 20.0,
         cloud_broker: str | None = None, down_qos: int | None = None) -> EdgeIdentity:
    """``cloud_broker``: the cloud broker as this node reaches it (another address or a NAT), instead of the
    one the join endpoint names; ``down_qos``: the bridge's down subscription QoS, instead of the one the join
    endpoint names (0 for a NATS cluster; neither said: the bridge's default)."""
    Address.parse(cloud)
    if down_qos is not None:
        try:
            check_qos("--down-qos", down_qos)
        except ValueError as exc:
            raise JoinError(str(exc)) from exc
    if cloud_broker is not None:
        try:
            if not all(url.tls for url in BrokerUrl.parse_list(cloud_broker)):
                raise JoinError(f"--cloud-broker {cloud_broker}: the link needs TLS (mqtts://HOST:PORT)")
        except ValueError as exc:
            raise JoinError(f"--cloud-broker: {exc}") from exc
    if not is_node_name(node):
        raise JoinError(f"{node!r} is not a valid node name (lower-case letters, digits and '-', at most 63)")
    try:
        token = JoinToken.parse(token_text)
    except TokenError as exc:
        raise JoinError(str(exc)) from exc
    ca_pem = fetch_ca(cloud, token, timeout)
    key_pem, csr_pem = new_key_and_csr(node)
    trusted = ssl.create_default_context(cadata=ca_pem.decode())
    answer = json.loads(_request(f"https://{cloud}/join", trusted,
                                 {"token": token_text.strip(), "node": node, "csr": csr_pem.decode()}, timeout))
    cert_pem = str(answer["certificate"]).encode()
    if cert_info(cert_pem).subject_cn != node:
        raise JoinError("the cloud returned a certificate for another name; refusing it")
    if down_qos is None and answer.get("down_qos") is not None:
        down_qos = answer["down_qos"]
        try:
            check_qos("the join endpoint's down_qos", down_qos)
        except ValueError as exc:
            raise JoinError(f"{exc}; refusing the answer (join with --down-qos 0 or 1 to override)") from exc
    identity = EdgeIdentity(state_dir)
    identity.ca.parent.mkdir(parents=True, exist_ok=True)
    identity.ca.write_bytes(ca_pem)
    identity.key.touch(mode=0o600)
    identity.key.write_bytes(key_pem)
    identity.cert.write_bytes(cert_pem)
    identity.endpoint.write_text(cloud + "\n")
    identity.config.write_text(
        "# Written by edgehive join. The edge processes read it with --config.\n"
        f"node: {node}\n"
        f"cloud: {cloud_broker or answer['cloud_broker']}\n"
        f"cloud_ca: {identity.ca}\n"
        f"cloud_cert: {identity.cert}\n"
        f"cloud_key: {identity.key}\n"
        + (f"down_qos: {down_qos}\n" if down_qos is not None else ""))
    return identity


def renew(cloud: str, identity: EdgeIdentity, node: str, timeout: float = 20.0) -> None:
    """Replace the node's certificate with a fresh one, authenticated by the current one.

    The old certificate stays valid until it expires, so a connection made with it goes on;
    the new pair is written beside the old and renamed over it (key, then certificate), and
    a process picks it up at its next connection (a mismatched read fails that attempt only).
    """
    context = ssl.create_default_context(cafile=str(identity.ca))
    context.load_cert_chain(identity.cert, identity.key)
    key_pem, csr_pem = new_key_and_csr(node)
    answer = json.loads(_request(f"https://{cloud}/renew", context, {"node": node, "csr": csr_pem.decode()},
                                 timeout))
    new_key, new_cert = identity.key.with_suffix(".key.new"), identity.cert.with_suffix(".crt.new")
    new_key.touch(mode=0o600)
    new_key.write_bytes(key_pem)
    new_cert.write_bytes(str(answer["certificate"]).encode())
    new_key.replace(identity.key)
    new_cert.replace(identity.cert)


RENEW_WHEN_LEFT = 1 / 3
"""Renew when a third of the certificate's life is left (four months of a year), as kubelet rotates."""


def renew_if_due(identity: EdgeIdentity, threshold: float = RENEW_WHEN_LEFT) -> bool:
    """Renew through the endpoint the node joined with, when the certificate is due; True if it was renewed."""
    if identity.remaining_fraction() >= threshold:
        return False
    renew(identity.endpoint.read_text().strip(), identity, identity.node())
    return True
