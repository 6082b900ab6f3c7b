"""A pod's place on the host: namespaces it shares, its hostname, resolver and /etc/hosts entries. No I/O.

An edge node has no cluster DNS (no kube-dns Service reaches it), so ClusterFirst
and ClusterFirstWithHostNet resolve as Default does, through the node's own
resolv.conf: kubelet does the same when it runs without ``--cluster-dns``. dnsConfig
is merged into that as kubelet merges it (servers and searches appended, options
by name), and replaces it under dnsPolicy None.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edge.edged.hostfacts import HostFacts
from edge.edged.podfields import FieldRefused

MAX_NAMESERVERS = 3
MAX_SEARCHES = 6
MAX_HOSTNAME = 64
DNS_POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")


@dataclass(frozen=True)
class PodHost:
    hostname: str = ""
    """Empty: the pod's name."""
    host_pid: bool = False
    host_ipc: bool = False
    share_pid: bool = False
    dns_servers: tuple[str, ...] = ()
    """Empty (with the two below): podman's default, the node's resolv.conf."""
    dns_searches: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()
    hosts: tuple[tuple[str, str], ...] = ()
    """(hostname, ip) entries for /etc/hosts, in the pod's order."""

    @property
    def custom_dns(self) -> bool:
        return bool(self.dns_servers or self.dns_searches or self.dns_options)


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _merge_options(base: tuple[str, ...], extra: list[Mapping[str, Any]]) -> tuple[str, ...]:
    """resolv.conf options by name, the pod's replacing the node's (``ndots:5`` against ``ndots:1``)."""
    merged = {o.split(":", 1)[0]: o for o in base}
    for option in extra:
        name = str(option.get("name", ""))
        if not name:
            raise ValueError("a dnsConfig option has no name")
        value = option.get("value")
        merged[name] = f"{name}:{value}" if value not in (None, "") else name
    return tuple(merged.values())


def _dns(spec: Mapping[str, Any], facts: HostFacts) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if policy not in DNS_POLICIES:
        raise FieldRefused("spec.dnsPolicy", f"{policy!r} is not one of {', '.join(DNS_POLICIES)}")
    config = spec.get("dnsConfig") or {}
    if policy != "None" and not config:
        return (), (), ()  # podman's default is the node's resolv.conf, with its loopback servers replaced
    base = facts.resolv if policy != "None" else type(facts.resolv)()
    servers = list(base.nameservers)
    if not spec.get("hostNetwork"):  # a resolver on the node's loopback is out of a pod's reach
        servers = [s for s in servers if not ipaddress.ip_address(s.split("%")[0]).is_loopback]
    for server in config.get("nameservers") or []:
        ipaddress.ip_address(str(server))  # a ValueError names the bad address
        servers.append(str(server))
    searches = _unique([*base.searches, *map(str, config.get("searches") or [])])
    servers = _unique(servers)
    if policy == "None" and not servers:
        raise FieldRefused("spec.dnsConfig.nameservers", "dnsPolicy None needs at least one nameserver")
    if len(servers) > MAX_NAMESERVERS:
        raise FieldRefused("spec.dnsConfig.nameservers", f"{len(servers)} nameservers with the node's; a resolver "
                           f"reads {MAX_NAMESERVERS} at most")
    if len(searches) > MAX_SEARCHES:
        raise FieldRefused("spec.dnsConfig.searches", f"{len(searches)} search domains with the node's; at most "
                           f"{MAX_SEARCHES}")
    return tuple(servers), tuple(searches), _merge_options(base.options, config.get("options") or [])


def _hosts(spec: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    for alias in spec.get("hostAliases") or []:
        ip = str(alias.get("ip", ""))
        ipaddress.ip_address(ip)
        out.extend((str(name), ip) for name in alias.get("hostnames") or [])
    return tuple(out)


def _hostname(pod: Mapping[str, Any], facts: HostFacts) -> str:
    spec = pod.get("spec") or {}
    metadata = pod.get("metadata") or {}
    hostname = str(spec.get("hostname") or metadata.get("name") or "")[:63]
    subdomain = spec.get("subdomain")
    if not spec.get("setHostnameAsFQDN") or not subdomain:
        return hostname
    fqdn = f"{hostname}.{subdomain}.{metadata.get('namespace')}.svc.{facts.cluster_domain}"
    if len(fqdn) > MAX_HOSTNAME:
        raise FieldRefused("spec.setHostnameAsFQDN", f"the FQDN {fqdn} is longer than {MAX_HOSTNAME} characters")
    return fqdn


def plan_host(pod: Mapping[str, Any], facts: HostFacts) -> PodHost:
    spec = pod.get("spec") or {}
    if spec.get("hostPID") and spec.get("shareProcessNamespace"):
        raise FieldRefused("spec.shareProcessNamespace", "it cannot be set with hostPID")
    servers, searches, options = _dns(spec, facts)
    return PodHost(hostname=_hostname(pod, facts), host_pid=bool(spec.get("hostPID")),
                   host_ipc=bool(spec.get("hostIPC")), share_pid=bool(spec.get("shareProcessNamespace")),
                   dns_servers=servers, dns_searches=searches, dns_options=options, hosts=_hosts(spec))
