"""Where the stream server's serving certificate and client CA come from (cloud/stream/servingtls.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, cast

import pytest

from cloud.kube import Kube, KubeError
from cloud.stream.component import StreamServerSettings
from cloud.stream.servingtls import TlsSources, san, server_tls
from runtime.pki import CertificateAuthority


class ConfigMapOnly:
    """Answers the one read server_tls makes of the API for the client CA; anything else is a test failure."""

    def __init__(self, data: dict[str, str] | None) -> None:
        self.data = data

    def get_configmap_data(self, namespace: str, name: str) -> dict[str, str] | None:
        assert (namespace, name) == ("kube-system", "extension-apiserver-authentication")
        return self.data


def _kube(data: dict[str, str] | None = None) -> Kube:
    return cast(Kube, ConfigMapOnly(data))


def _sans(cert: str) -> str:
    return subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", cert], capture_output=True,
                          text=True, check=True).stdout


def _verifies(ca: Path, cert: str) -> bool:
    return subprocess.run(["openssl", "verify", "-CAfile", str(ca), cert], capture_output=True,
                          check=False).returncode == 0


def test_names_are_dns_or_ip_entries_with_loopback_always() -> None:
    assert san("stream") == "DNS:stream"
    assert san("10.0.0.5") == "IP:10.0.0.5"
    assert san("IP:::1") == "IP:::1"
    assert san("DNS:cloud.example.com") == "DNS:cloud.example.com"
    for bad in ("IP:not-an-address", "two words", "DNS:"):
        with pytest.raises(ValueError, match=r"server name|does not appear"):
            san(bad)
    assert TlsSources(server_names="stream, 10.0.0.5").names() == ("DNS:stream", "IP:10.0.0.5", "DNS:localhost",
                                                                    "IP:127.0.0.1")
    assert TlsSources(listen_host="10.1.2.3").names() == ("IP:10.1.2.3", "DNS:localhost", "IP:127.0.0.1")
    assert TlsSources(listen_host="0.0.0.0").names() == ("DNS:localhost", "IP:127.0.0.1")


@pytest.mark.parametrize(("given", "message"), [
    ({"tls_cert": "/c"}, "--tls-cert and --tls-key go together"),
    ({"serving_ca": "/ca"}, "--serving-ca and --serving-ca-key go together"),
    ({"tls_cert": "/c", "tls_key": "/k", "serving_ca": "/ca", "serving_ca_key": "/k"}, "give one"),
    ({"client_cn": " , "}, "names no CN"),
    ({"server_names": "a b"}, "neither"),
])
def test_settings_refuse_what_cannot_make_a_server(given: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StreamServerSettings(**cast(Any, given))


def test_no_certificate_files_are_required_any_more() -> None:
    settings = StreamServerSettings(listen="10.1.2.3:10350", client_cn="kube-apiserver-kubelet-client,system:apiserver")
    assert settings.tls_sources().cns() == frozenset({"kube-apiserver-kubelet-client", "system:apiserver"})
    assert settings.tls_sources().names()[0] == "IP:10.1.2.3"


def test_a_serving_ca_issues_the_certificate_and_the_api_server_gives_the_client_ca(tmp_path: Path) -> None:
    serving, client = CertificateAuthority.create(), CertificateAuthority.create()
    (tmp_path / "ca.crt").write_bytes(serving.cert_pem)
    (tmp_path / "ca.key").write_bytes(serving.key_pem)
    sources = TlsSources(serving_ca=str(tmp_path / "ca.crt"), serving_ca_key=str(tmp_path / "ca.key"),
                         server_names="stream", client_cns="kube-apiserver-kubelet-client")
    folder = tmp_path / "made"
    folder.mkdir()
    tls = server_tls(sources, _kube({"client-ca-file": client.cert_pem.decode()}), folder)
    assert _verifies(tmp_path / "ca.crt", tls.cert)
    assert "DNS:stream" in _sans(tls.cert)
    assert "IP Address:127.0.0.1" in _sans(tls.cert)
    assert Path(tls.client_ca).read_bytes() == client.cert_pem
    assert oct(Path(tls.key).stat().st_mode & 0o777) == "0o600"
    tls.context()  # loads: the key matches, the CA parses


def test_given_files_are_used_as_they_are(tmp_path: Path) -> None:
    tls = server_tls(TlsSources(tls_cert="/c.crt", tls_key="/c.key", client_ca="/ca.crt", client_cns="x"), _kube(),
                     tmp_path)
    assert (tls.cert, tls.key, tls.client_ca, tls.client_cns) == ("/c.crt", "/c.key", "/ca.crt", frozenset({"x"}))
    assert list(tmp_path.iterdir()) == []


def test_an_api_server_without_a_client_ca_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KubeError, match="without --client-ca-file"):
        server_tls(TlsSources(tls_cert="/c.crt", tls_key="/c.key", client_cns="x"), _kube({}), tmp_path)
