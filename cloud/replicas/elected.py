"""Running a cloud controller as one of several candidates: ``--leader-elect LEASE`` makes the process wait as
a standby until it holds the Lease, then run the component as usual (cloud/replicas/leader.py says why
active/standby). Without the flag nothing changes: the component starts at once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from cloud.kube import Kube, KubeError
from cloud.replicas.leader import LeaderElector, default_identity, lose_leadership
from runtime import logs, settings
from runtime.bus import Bus
from runtime.component import Component, ComponentSettings, run_component
from runtime.healthfile import HealthFile
from schemas.names import is_object_name
from schemas.topics import Side

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaderElectSettings:
    leader_elect: str = field(default="", metadata={
        "help": "the name of a Lease in edgehive-system to elect one leader on: of the processes given the same "
                "name one runs, the others wait until its Lease expires (off: run at once)"})
    leader_lease_s: int = field(default=15, metadata={
        "help": "leaseDurationSeconds of that Lease: a dead leader is replaced after about this long"})
    leader_identity: str = field(default="", metadata={
        "help": "this candidate's holderIdentity (default: HOST-PID)"})


class ElectedSettings(Protocol):
    """What the election reads of a controller's (frozen) settings."""

    @property
    def leader_elect(self) -> str: ...
    @property
    def leader_lease_s(self) -> int: ...
    @property
    def leader_identity(self) -> str: ...
    @property
    def kubeconfig(self) -> str | None: ...
    @property
    def kube_server(self) -> str | None: ...
    @property
    def log_level(self) -> str: ...
    @property
    def log_format(self) -> str: ...


S = TypeVar("S", bound=ComponentSettings)


def run_elected(module: str, settings_cls: type[S], make: Callable[[S, Bus], Component], *,
                description: str) -> int:
    """``run_component``, after winning the election when ``--leader-elect`` is given."""
    s = settings.parse(settings_cls, None, prog=f"python -m {module}", description=description)
    elector = _elect(module, s) if isinstance(s, LeaderElectSettings) and s.leader_elect else None
    try:
        return run_component(module, Side.CLOUD, settings_cls, make, description=description)
    finally:
        if elector is not None:
            elector.release()


def _elect(module: str, s: ElectedSettings) -> LeaderElector:
    if not is_object_name(s.leader_elect):
        raise SystemExit(f"{module}: --leader-elect {s.leader_elect!r} is not a Lease name (a DNS-1123 subdomain)")
    if s.leader_lease_s < 2:
        raise SystemExit(f"{module}: --leader-lease-s {s.leader_lease_s} leaves no time to renew: use 2 or more")
    logs.setup(module, s.log_level, s.log_format)
    try:
        kube = Kube.connect(s.kubeconfig, s.kube_server)
    except KubeError as exc:
        raise SystemExit(f"{module}: {exc}") from exc
    elector = LeaderElector(kube, s.leader_elect, s.leader_identity or default_identity(), s.leader_lease_s)
    # A standby is doing its job (as kube-controller-manager's standbys answer /healthz): its container is
    # healthy while it waits, not restarted by an orchestrator that reads the health file.
    standby = HealthFile.from_env(module)
    standby.set("up", role="standby", lease=s.leader_elect)
    elector.wait_to_lead()
    standby.close("starting")  # the component's own health file takes over from here
    elector.keep(lose_leadership)
    return elector
