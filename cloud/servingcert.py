"""A serving certificate from the cluster CA for a server the API server calls (the admission webhook, the
metrics API): issued at each start and never stored, since the caBundle it is registered with, the CA, stays
the same across restarts."""

from __future__ import annotations

from collections.abc import Iterable

from cloud.clusterpki import ClusterPki
from cloud.kube import Kube
from runtime.pki import CertificateAuthority


def issue_serving_cert(kube: Kube, common_name: str, names: Iterable[str]) -> tuple[CertificateAuthority, bytes,
                                                                                   bytes]:
    """The cluster CA, and a key and certificate for ``names`` (DNS:/IP: entries) from it."""
    ca = ClusterPki(kube).ensure_ca()
    key, cert = ca.issue(common_name, server_names=names)
    return ca, key, cert
