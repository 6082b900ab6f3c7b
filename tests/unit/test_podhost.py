"""Pod-level host settings: dns policy and config merged as kubelet does, hostAliases, hostname, namespaces."""

from __future__ import annotations

from typing import Any

import pytest

from edge.edged.hostfacts import HostFacts, ResolvConf
from edge.edged.podfields import FieldRefused
from edge.edged.podhost import plan_host

NODE_RESOLV = ResolvConf.parse("# node\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch corp.example lan\n"
                               "options ndots:1 edns0\n")
FACTS = HostFacts(resolv=NODE_RESOLV)


def pod(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web-0", "namespace": "shop"}, "spec": {"containers": [], **spec}}


def test_resolv_conf_is_read_as_a_resolver_reads_it() -> None:
    assert ResolvConf(("127.0.0.53", "10.0.0.2"), ("corp.example", "lan"), ("ndots:1", "edns0")) == NODE_RESOLV


def test_cluster_first_without_cluster_dns_is_the_nodes_resolver() -> None:
    host = plan_host(pod(), FACTS)
    assert not host.custom_dns  # podman's default: the node's resolv.conf
    assert not plan_host(pod(dnsPolicy="Default"), FACTS).custom_dns


def test_dns_config_merges_into_the_nodes_resolver() -> None:
    host = plan_host(pod(dnsConfig={"nameservers": ["1.1.1.1"], "searches": ["svc.edge"],
                                    "options": [{"name": "ndots", "value": "5"}, {"name": "rotate"}]}), FACTS)
    assert host.dns_servers == ("10.0.0.2", "1.1.1.1")  # the node's loopback resolver is out of the pod's reach
    assert host.dns_searches == ("corp.example", "lan", "svc.edge")
    assert host.dns_options == ("ndots:5", "edns0", "rotate")
    on_host = plan_host(pod(hostNetwork=True, dnsConfig={"nameservers": ["1.1.1.1"]}), FACTS)
    assert on_host.dns_servers == ("127.0.0.53", "10.0.0.2", "1.1.1.1")


def test_dns_policy_none_takes_only_the_pods_config() -> None:
    host = plan_host(pod(dnsPolicy="None", dnsConfig={"nameservers": ["9.9.9.9"], "searches": ["a.b"]}), FACTS)
    assert (host.dns_servers, host.dns_searches, host.dns_options) == (("9.9.9.9",), ("a.b",), ())
    with pytest.raises(FieldRefused, match="needs at least one nameserver"):
        plan_host(pod(dnsPolicy="None"), FACTS)
    with pytest.raises(FieldRefused, match="3 at most"):
        plan_host(pod(dnsConfig={"nameservers": ["1.1.1.1", "1.0.0.1", "8.8.8.8"]}), FACTS)
    with pytest.raises(FieldRefused, match=r"spec\.dnsPolicy"):
        plan_host(pod(dnsPolicy="ClusterLast"), FACTS)


def test_host_aliases_hostname_and_namespaces() -> None:
    host = plan_host(pod(hostAliases=[{"ip": "10.1.2.3", "hostnames": ["db", "db.local"]}], hostPID=True,
                         hostIPC=True, hostname="api", subdomain="svc"), FACTS)
    assert host.hosts == (("db", "10.1.2.3"), ("db.local", "10.1.2.3"))
    assert (host.hostname, host.host_pid, host.host_ipc, host.share_pid) == ("api", True, True, False)
    fqdn = plan_host(pod(subdomain="nginx", setHostnameAsFQDN=True), FACTS)
    assert fqdn.hostname == "web-0.nginx.shop.svc.cluster.local"
    assert plan_host(pod(shareProcessNamespace=True), FACTS).share_pid
    with pytest.raises(FieldRefused, match="cannot be set with hostPID"):
        plan_host(pod(shareProcessNamespace=True, hostPID=True), FACTS)
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        plan_host(pod(hostAliases=[{"ip": "db", "hostnames": ["x"]}]), FACTS)
