"""What this machine offers pods beyond podman's defaults: LSMs, seccomp profiles, its resolver.

Read once when EdgeD starts, so planning a pod stays free of I/O but for the
existence of a Localhost seccomp profile, which a user may add at any time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_SECCOMP_DIR = "/var/lib/kubelet/seccomp"
"""kubelet's ``<root-dir>/seccomp``, where Localhost profiles are looked up."""

CLUSTER_DOMAIN = "cluster.local"


@dataclass(frozen=True)
class ResolvConf:
    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> ResolvConf:
        """The lines a resolver reads; the last ``search`` line wins, as in glibc."""
        servers: list[str] = []
        searches: list[str] = []
        options: list[str] = []
        for line in text.splitlines():
            words = line.split("#", 1)[0].split(";", 1)[0].split()
            if not words:
                continue
            if words[0] == "nameserver" and len(words) > 1:
                servers.append(words[1])
            elif words[0] in ("search", "domain"):
                searches = words[1:]
            elif words[0] == "options":
                options.extend(words[1:])
        return cls(tuple(servers), tuple(searches), tuple(options))


@dataclass(frozen=True)
class HostFacts:
    selinux: bool = False
    apparmor: bool = False
    seccomp_dir: str = DEFAULT_SECCOMP_DIR
    resolv: ResolvConf = field(default_factory=ResolvConf)
    cluster_domain: str = CLUSTER_DOMAIN

    @classmethod
    def detect(cls, seccomp_dir: str = DEFAULT_SECCOMP_DIR, resolv_conf: str = "/etc/resolv.conf") -> HostFacts:
        """SELinux is on when selinuxfs is mounted, AppArmor when the kernel module says so (podman's tests)."""
        try:
            apparmor = Path("/sys/module/apparmor/parameters/enabled").read_text().strip() == "Y"
        except OSError:
            apparmor = False
        try:
            resolv = ResolvConf.parse(Path(resolv_conf).read_text())
        except OSError:
            resolv = ResolvConf()
        return cls(selinux=Path("/sys/fs/selinux/enforce").exists(), apparmor=apparmor, seccomp_dir=seccomp_dir,
                   resolv=resolv)
