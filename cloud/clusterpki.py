"""The cluster's identities, kept in Kubernetes Secrets so that no cloud component holds state.

Secrets in ``edgehive-system`` (as KubeEdge keeps its CA in ``kubeedge``):

- ``edgehive-ca``: the cluster CA (``ca.crt``, ``ca.key``) and the key that signs join tokens;
- ``edgehive-cloud-broker``: the cloud broker's server certificate;
- ``edgehive-cloud-identity``: the client certificate the cloud components use (``CN=cloud``);
- ``edgehive-registry``: which node holds which certificate, which were revoked, which tokens were revoked.

The registry changes by read, modify, replace-if-unchanged, retried on conflict, so two
joins at once cannot lose one another's record.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from cloud.errors import CloudError
from cloud.kube import Kube, KubeError
from runtime.pki import CertificateAuthority, PkiError, cert_info
from runtime.url import BrokerUrl
from schemas import jointoken
from schemas.jointoken import JoinToken, TokenError
from schemas.names import is_node_name

NAMESPACE = "edgehive-system"
CA_SECRET = "edgehive-ca"
BROKER_SECRET = "edgehive-cloud-broker"
CLOUD_SECRET = "edgehive-cloud-identity"
REGISTRY_SECRET = "edgehive-registry"
CLOUD_USER = "cloud"
IDENTITY_DAYS = 365
AUTHENTICATION_CONFIGMAP = ("kube-system", "extension-apiserver-authentication")
"""Where every API server publishes the CA it trusts for client certificates (``client-ca-file``)."""


def member_names(cloud_broker: str) -> list[str]:
    """The certificate names (``DNS:``/``IP:``) of every member of a cloud broker URL, one address or a
    cluster's list (``mqtts://h1:p1,h2:p2``): a node moves to any of them, so the certificate must name each."""
    names = []
    for url in BrokerUrl.parse_list(cloud_broker):
        try:
            ipaddress.ip_address(url.host)
            names.append(f"IP:{url.host}")
        except ValueError:
            names.append(f"DNS:{url.host}")
    return sorted(set(names))


class JoinRefused(CloudError, RuntimeError):
    """A join that must not succeed; the message is what the joining node is told."""


@dataclass
class Registry:
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)  # node -> serial, not_after, token, joined
    revoked: dict[str, str] = field(default_factory=dict)  # certificate serial -> node
    revoked_tokens: list[str] = field(default_factory=list)

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes | None) -> Registry:
        raw = json.loads(data) if data else {}
        return cls(nodes=dict(raw.get("nodes", {})), revoked=dict(raw.get("revoked", {})),
                   revoked_tokens=list(raw.get("revoked_tokens", [])))


@dataclass(frozen=True)
class Identity:
    cert_pem: bytes
    key_pem: bytes


class ClusterPki:
    def __init__(self, kube: Kube, namespace: str = NAMESPACE) -> None:
        self.kube = kube
        self.namespace = namespace

    # -- set-up ------------------------------------------------------------------------

    def init(self, broker_names: Iterable[str]) -> list[str]:
        """Create what is missing; returns what it created or changed (empty on a rerun).

        A broker name not in the broker's certificate yet re-issues it with every name so far
        (restart the cloud broker and the join endpoint to serve it).
        """
        self.kube.ensure_namespace(self.namespace)
        created: list[str] = []
        ca = CertificateAuthority.create()
        if self.kube.create_secret(self.namespace, CA_SECRET, {"ca.crt": ca.cert_pem, "ca.key": ca.key_pem,
                                                               "token.key": secrets.token_bytes(32)}):
            created.append(CA_SECRET)
        ca, _ = self.ca()  # the one that won, if another init raced us
        names = set(broker_names) | {"DNS:localhost", "IP:127.0.0.1"}
        found = self.kube.get_secret(self.namespace, BROKER_SECRET)
        if found is None:
            key, cert = ca.issue("edgehive-cloud-broker", server_names=sorted(names))
            if self.kube.create_secret(self.namespace, BROKER_SECRET, {"tls.crt": cert, "tls.key": key,
                                                                       "names": ",".join(sorted(names)).encode()}):
                created.append(BROKER_SECRET)
        else:
            data, version = found
            had = set(filter(None, data.get("names", b"").decode().split(",")))
            if not names <= had:  # a new address for the cloud: the certificate must name it too
                names |= had
                key, cert = ca.issue("edgehive-cloud-broker", server_names=sorted(names))
                self.kube.replace_secret(self.namespace, BROKER_SECRET, {"tls.crt": cert, "tls.key": key,
                                                                         "names": ",".join(sorted(names)).encode()},
                                         version)
                created.append(f"{BROKER_SECRET} (now also for {', '.join(sorted(names - had))})")
        key, cert = ca.issue(CLOUD_USER, client=True)
        if self.kube.create_secret(self.namespace, CLOUD_SECRET, {"tls.crt": cert, "tls.key": key}):
            created.append(CLOUD_SECRET)
        if self.kube.create_secret(self.namespace, REGISTRY_SECRET, {"registry.json": Registry().encode()}):
            created.append(REGISTRY_SECRET)
        return created

    def _secret(self, name: str) -> dict[str, bytes]:
        found = self.kube.get_secret(self.namespace, name)
        if found is None:
            raise KubeError(404, f"Secret {self.namespace}/{name} is missing: run edgehive init first")
        return found[0]

    def ca(self) -> tuple[CertificateAuthority, bytes]:
        data = self._secret(CA_SECRET)
        return CertificateAuthority(data["ca.crt"], data["ca.key"]), data["token.key"]

    def ensure_ca(self) -> CertificateAuthority:
        """The cluster CA; on a cluster where ``edgehive init`` has not run yet (a bare ``edgehive up``, a compose
        stack), the cluster's identities are made first, as init makes them."""
        try:
            return self.ca()[0]
        except KubeError as exc:
            if exc.status != 404:
                raise
        self.init([])
        return self.ca()[0]

    def apiserver_client_ca(self) -> bytes:
        """The CA the API server trusts for client certificates, as it publishes it. kubeadm, k3s and the embedded
        stack sign the API server's own kubelet client certificate with it, so it is the CA a kubelet (here the
        stream server) checks that certificate against (a kubelet's --client-ca-file)."""
        namespace, name = AUTHENTICATION_CONFIGMAP
        data = self.kube.get_configmap_data(namespace, name)
        ca = (data or {}).get("client-ca-file", "")
        if "BEGIN CERTIFICATE" not in ca:
            raise KubeError(404, f"ConfigMap {namespace}/{name} has no client-ca-file: the API server was started "
                                 "without --client-ca-file; give the CA of its kubelet client certificate instead")
        return ca.encode()

    def broker_identity(self) -> Identity:
        data = self._secret(BROKER_SECRET)
        return Identity(data["tls.crt"], data["tls.key"])

    def unnamed_members(self, cloud_broker: str) -> list[str]:
        """The members of ``cloud_broker`` the brokers' certificate does not name (a node could not move there)."""
        data = self._secret(BROKER_SECRET)
        named = set(filter(None, data.get("names", b"").decode().split(",")))
        return [name for name in member_names(cloud_broker) if name not in named]

    def cloud_identity(self) -> Identity:
        data = self._secret(CLOUD_SECRET)
        return Identity(data["tls.crt"], data["tls.key"])

    # -- tokens and joins --------------------------------------------------------------

    def gettoken(self, ttl_s: float) -> JoinToken:
        ca, key = self.ca()
        return jointoken.issue(key, ca.hash, ttl_s)

    def registry(self) -> Registry:
        return Registry.decode(self._secret(REGISTRY_SECRET).get("registry.json"))

    def _update(self, change: Callable[[Registry], None]) -> Registry:
        for _attempt in range(10):
            found = self.kube.get_secret(self.namespace, REGISTRY_SECRET)
            if found is None:
                raise KubeError(404, f"Secret {self.namespace}/{REGISTRY_SECRET} is missing: run edgehive init")
            data, version = found
            registry = Registry.decode(data.get("registry.json"))
            change(registry)
            try:
                self.kube.replace_secret(self.namespace, REGISTRY_SECRET, {"registry.json": registry.encode()},
                                         version)
                return registry
            except KubeError as exc:
                if exc.status != 409:
                    raise
        raise KubeError(409, "the node registry kept changing under us; try again")

    def join(self, token_text: str, node: str, csr_pem: bytes) -> bytes:
        """Check the token, sign the node's CSR (``CN=node``) and record it; returns the certificate."""
        if not is_node_name(node):
            raise JoinRefused(f"{node!r} is not a valid node name (a DNS-1123 label)")
        ca, key = self.ca()
        try:
            token = JoinToken.parse(token_text)
            jointoken.check(token, key, ca.hash, self.registry().revoked_tokens)
            cert = ca.sign_identity(csr_pem, node, IDENTITY_DAYS)
        except (TokenError, PkiError) as exc:
            raise JoinRefused(str(exc)) from exc
        info = cert_info(cert)

        def record(registry: Registry) -> None:
            if token.token_id in registry.revoked_tokens:  # revoked while we were signing
                raise JoinRefused(f"token {token.token_id} was revoked; get a new one (edgehive gettoken)")
            registry.nodes[node] = {"serial": info.serial, "not_after": info.not_after.isoformat(),
                                    "token": token.token_id, "joined": int(time.time())}

        self._update(record)
        return cert

    def renew(self, node: str, presented_cert: bytes, csr_pem: bytes) -> bytes:
        """A new certificate for a node that proves it holds a current one (rotation before expiry)."""
        ca, _ = self.ca()
        info = cert_info(presented_cert)
        registry = self.registry()
        if info.subject_cn != node or info.serial in registry.revoked:
            raise JoinRefused(f"node {node}'s certificate is revoked or not its own; join again with a new token")
        try:
            cert = ca.sign_identity(csr_pem, node, IDENTITY_DAYS)
        except PkiError as exc:
            raise JoinRefused(str(exc)) from exc
        new = cert_info(cert)

        def record(reg: Registry) -> None:
            entry = reg.nodes.setdefault(node, {})
            if entry.get("serial"):  # still valid until it expires: a revoke must cover it too
                entry["previous"] = [*entry.get("previous", []), entry["serial"]][-5:]
            entry.update(serial=new.serial, not_after=new.not_after.isoformat(), renewed=int(time.time()))

        self._update(record)
        return cert

    def revoke(self, node: str) -> bytes:
        """Revoke every certificate the node was given and the token it joined with; returns the new CRL."""
        def record(reg: Registry) -> None:
            if node not in reg.nodes and node not in reg.revoked.values():
                raise KeyError(f"no node {node!r} has joined this cluster (edgehive node list)")
            entry = reg.nodes.pop(node, None)
            if entry:
                reg.revoked[str(entry["serial"])] = node
                for old in entry.get("previous", []):
                    reg.revoked[str(old)] = node
                if entry.get("token") and entry["token"] not in reg.revoked_tokens:
                    reg.revoked_tokens.append(str(entry["token"]))

        return self.crl(self._update(record))

    def crl(self, registry: Registry | None = None) -> bytes:
        """The CRL of every revoked serial (of ``registry``, or read now)."""
        ca, _ = self.ca()
        return ca.crl(sorted((registry or self.registry()).revoked.items()))
