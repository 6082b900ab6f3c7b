"""LocalApiServer's command lines and identities: the API server alone, or with the controllers it then needs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgehive import localcluster
from edgehive.localcluster import LocalApiServer


@pytest.fixture
def prepared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalApiServer:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is missing: run scripts/setup", pytrace=False)
    for name in ("APISERVER_BIN", "CONTROLLER_MANAGER_BIN", "SCHEDULER_BIN"):
        monkeypatch.setattr(localcluster, name, Path("/bin/true"))  # prepare() checks that they exist
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    local = LocalApiServer(tmp_path, port=7443, control_plane=True, controller_manager_port=7257,
                           scheduler_port=7259)
    local.prepare()
    return local


def test_each_component_has_its_own_identity(prepared: LocalApiServer) -> None:
    """The bootstrap RBAC roles of the controller-manager and scheduler are bound to these user names."""
    rows = [line.split(",") for line in (prepared.state_dir / "tokens.csv").read_text().splitlines()]
    users = {row[1]: row[0] for row in rows}
    assert set(users) == {"admin", "system:kube-controller-manager", "system:kube-scheduler"}
    assert len(set(users.values())) == 3
    for component, user in (("kube-controller-manager", "system:kube-controller-manager"),
                            ("kube-scheduler", "system:kube-scheduler")):
        kubeconfig = prepared.component_kubeconfig(component).read_text()
        assert f"token: {users[user]}" in kubeconfig
        assert f"name: {user}" in kubeconfig
    assert f"token: {users['admin']}" in prepared.kubeconfig.read_text()


def test_tokens_survive_a_second_prepare(prepared: LocalApiServer) -> None:
    """kubeconfigs handed out stay valid across restarts of edgehive up."""
    before = (prepared.state_dir / "tokens.csv").read_text()
    prepared.prepare()
    assert (prepared.state_dir / "tokens.csv").read_text() == before


def test_the_control_plane_enables_service_accounts(prepared: LocalApiServer) -> None:
    apiserver = prepared.apiserver_argv()
    assert not any(arg.startswith("--disable-admission-plugins") for arg in apiserver)
    assert "--feature-gates=BoundServiceAccountTokenVolume=true" in apiserver
    manager = prepared.controller_manager_argv()
    assert "--feature-gates=BoundServiceAccountTokenVolume=true" in manager
    assert f"--service-account-private-key-file={prepared.pki / 'sa.key'}" in manager
    assert "--secure-port=7257" in manager
    assert "--port=0" in manager
    assert "--secure-port=7259" in prepared.scheduler_argv()


def test_the_api_server_alone_refuses_no_pod_for_want_of_a_service_account(tmp_path: Path) -> None:
    """Without the controller-manager nothing makes service accounts: the plugin that requires them is off."""
    alone = LocalApiServer(tmp_path)
    assert "--disable-admission-plugins=ServiceAccount" in alone.apiserver_argv()
    assert not any(arg.startswith("--feature-gates") for arg in alone.apiserver_argv())
