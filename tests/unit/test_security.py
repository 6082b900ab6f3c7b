"""securityContext planning: pod and container merged, podman's user, groups, capabilities, profiles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge.edged.hostfacts import HostFacts
from edge.edged.podfields import FieldRefused
from edge.edged.security import (
    EXTRA_DEFAULT_CAPS,
    ContainerSecurity,
    fs_group,
    non_root_violation,
    plan_security,
    podman_caps,
    podman_user,
)

FACTS = HostFacts()


def pod(pod_sc: dict[str, Any] | None = None, annotations: dict[str, str] | None = None,
        **sc: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns", "annotations": annotations or {}},
            "spec": {"securityContext": pod_sc or {},
                     "containers": [{"name": "main", "image": "i", "securityContext": sc}]}}


def test_container_overrides_pod_and_groups_merge() -> None:
    sec = plan_security(pod({"runAsUser": 1000, "runAsGroup": 3000, "supplementalGroups": [4000], "fsGroup": 2000},
                            runAsUser=1001), 0, FACTS)
    assert (sec.run_as_user, sec.run_as_group, sec.groups) == (1001, 3000, (4000, 2000))
    assert podman_user(sec, "") == "1001:3000"
    assert podman_user(plan_security(pod(runAsGroup=5), 0, FACTS), "nobody:nogroup") == "nobody:5"
    assert podman_user(plan_security(pod(), 0, FACTS), "") is None


def test_capabilities_start_from_the_kubernetes_default_set() -> None:
    default = plan_security(pod(), 0, FACTS)
    assert podman_caps(default, "") == (list(EXTRA_DEFAULT_CAPS), [])
    assert podman_caps(default, "1000") == ([], [])  # podman would make them ambient for a non-root user
    dropped = plan_security(pod(capabilities={"add": ["CAP_NET_ADMIN"], "drop": ["NET_RAW", "chown"]}), 0, FACTS)
    assert podman_caps(dropped, "") == (["AUDIT_WRITE", "MKNOD", "NET_ADMIN"], ["NET_RAW", "CHOWN"])
    only = plan_security(pod(capabilities={"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}), 0, FACTS)
    assert podman_caps(only, "") == (["NET_BIND_SERVICE"], ["ALL"])
    privileged = plan_security(pod(privileged=True, capabilities={"drop": ["ALL"]}), 0, FACTS)
    assert privileged.privileged
    assert podman_caps(privileged, "") == ([], [])
    with pytest.raises(ValueError, match="not a capability"):
        plan_security(pod(capabilities={"add": ["net admin"]}), 0, FACTS)


def test_read_only_and_privilege_escalation() -> None:
    sec = plan_security(pod(readOnlyRootFilesystem=True, allowPrivilegeEscalation=False), 0, FACTS)
    assert sec.read_only
    assert sec.no_new_privileges
    assert not plan_security(pod(allowPrivilegeEscalation=True), 0, FACTS).no_new_privileges


def test_seccomp_profiles(tmp_path: Path) -> None:
    facts = HostFacts(seccomp_dir=str(tmp_path))
    (tmp_path / "audit.json").write_text("{}")
    assert plan_security(pod(seccompProfile={"type": "RuntimeDefault"}), 0, facts).seccomp == ""
    assert plan_security(pod({"seccompProfile": {"type": "Unconfined"}}), 0, facts).seccomp == "unconfined"
    local = plan_security(pod(seccompProfile={"type": "Localhost", "localhostProfile": "audit.json"}), 0, facts)
    assert local.seccomp == str(tmp_path / "audit.json")
    note = {"seccomp.security.alpha.kubernetes.io/pod": "localhost/audit.json"}
    assert plan_security(pod(annotations=note), 0, facts).seccomp == str(tmp_path / "audit.json")
    with pytest.raises(FieldRefused, match=r"spec.containers\[0\].securityContext.seccompProfile is not supported "
                                           r"on this node: the Localhost profile 'gone.json' is not a file under"):
        plan_security(pod(seccompProfile={"type": "Localhost", "localhostProfile": "gone.json"}), 0, facts)


def test_lsm_options_are_refused_where_the_host_lacks_the_lsm() -> None:
    with pytest.raises(FieldRefused, match="SELinux is not enabled") as caught:
        plan_security(pod({"seLinuxOptions": {"level": "s0:c1,c2"}}), 0, FACTS)
    assert caught.value.field == "spec.securityContext.seLinuxOptions"
    sec = plan_security(pod({"seLinuxOptions": {"level": "s0:c1,c2", "type": "t"}}), 0, HostFacts(selinux=True))
    assert sec.selinux == ("type:t", "level:s0:c1,c2")
    with pytest.raises(FieldRefused, match="AppArmor is not enabled on the host") as caught:
        plan_security(pod(annotations={"container.apparmor.security.beta.kubernetes.io/main": "runtime/default"}),
                      0, FACTS)
    assert caught.value.reason == "AppArmor"
    unconfined = {"container.apparmor.security.beta.kubernetes.io/main": "unconfined"}
    assert plan_security(pod(annotations=unconfined), 0, FACTS).apparmor == "unconfined"
    assert plan_security(pod(appArmorProfile={"type": "Localhost", "localhostProfile": "edge"}), 0,
                         HostFacts(apparmor=True)).apparmor == "edge"


@pytest.mark.parametrize(("sec", "image_user", "message"), [
    (ContainerSecurity(run_as_non_root=True), "", "container has runAsNonRoot and image will run as root"),
    (ContainerSecurity(run_as_non_root=True), "0:0", "image will run as root"),
    (ContainerSecurity(run_as_non_root=True), "nobody", "image has non-numeric user (nobody), cannot verify"),
    (ContainerSecurity(run_as_non_root=True, run_as_user=0), "1000", "container's runAsUser breaks non-root policy"),
    (ContainerSecurity(run_as_non_root=True, run_as_user=1000), "", None),
    (ContainerSecurity(run_as_non_root=True), "1000:1000", None),
    (ContainerSecurity(), "", None),
])
def test_run_as_non_root_like_kubelet(sec: ContainerSecurity, image_user: str, message: str | None) -> None:
    found = non_root_violation(sec, image_user, "p_ns(u)", "main")
    if message is None:
        assert found is None
    else:
        assert found is not None
        assert message in found
        assert "(pod: 'p_ns(u)', container: main)" in found


def test_fs_group_goes_with_a_memory_empty_dir_too() -> None:
    assert fs_group({"securityContext": {"fsGroup": 7}, "volumes": [{"name": "d", "emptyDir": {}}]}) == 7
    assert fs_group({"volumes": [{"name": "m", "emptyDir": {"medium": "Memory"}}]}) is None
    assert fs_group({"securityContext": {"fsGroup": 7},
                     "volumes": [{"name": "m", "emptyDir": {"medium": "Memory"}}]}) == 7
