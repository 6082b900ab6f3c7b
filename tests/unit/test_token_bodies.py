"""A node's token query and the cloud's answer (schemas/tokens.py), and who may have which token
(cloud/edgecontroller/tokens.py)."""

from __future__ import annotations

from typing import Any

import pytest

from cloud.edgecontroller.tokens import token_refusal
from schemas.fields import BodyError
from schemas.resource import ResourceKey
from schemas.tokens import TokenGrant, TokenQuery, pod_service_account

BODY = {"namespace": "ns", "pod": "p", "uid": "u-1", "serviceAccountName": "robot", "audiences": ["vault"],
        "expirationSeconds": 3607}


def test_query_round_trip_and_key() -> None:
    query = TokenQuery.parse(BODY)
    assert query == TokenQuery("ns", "p", "u-1", "robot", ("vault",), 3607)
    assert TokenQuery.parse(query.as_body()) == query
    assert query.key() == ResourceKey("ns", "serviceaccounttoken", "robot")
    query.check_key(ResourceKey("ns", "serviceaccounttoken", "robot"))
    with pytest.raises(BodyError, match="res: must be ns/serviceaccounttoken/robot"):
        query.check_key(ResourceKey("other", "serviceaccounttoken", "robot"))
    assert TokenQuery.parse({**BODY, "audiences": None, "extra": 1}).audiences == ()


@pytest.mark.parametrize(("change", "field"), [
    ({"uid": None}, "body.uid"),
    ({"pod": ""}, "body.pod"),
    ({"serviceAccountName": 3}, "body.serviceAccountName"),
    ({"audiences": "vault"}, "body.audiences"),
    ({"audiences": [""]}, r"body.audiences\[0\]"),
    ({"expirationSeconds": 599}, "body.expirationSeconds"),
    ({"expirationSeconds": True}, "body.expirationSeconds"),
    ({"expirationSeconds": None}, "body.expirationSeconds"),
])
def test_bad_queries_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(BodyError, match=f"^{field}: "):
        TokenQuery.parse({**BODY, **change})
    with pytest.raises(BodyError, match=r"^body: must be a map"):
        TokenQuery.parse(["not", "a", "map"])


def test_grant_parsing() -> None:
    grant = TokenGrant.parse({"token": "a.b.c", "expirationTimestamp": "2027-01-01T00:00:00Z"})
    assert grant.expires_at == 1798761600.0
    assert TokenGrant.parse(grant.as_body()) == grant
    assert TokenGrant.parse({"token": "a.b.c", "expirationTimestamp": "2027-01-01T00:00:00.5Z"}).expires_at == \
        1798761600.0
    for bad, field in (({"token": "", "expirationTimestamp": "2027-01-01T00:00:00Z"}, "body.token"),
                       ({"token": "a b", "expirationTimestamp": "2027-01-01T00:00:00Z"}, "body.token"),
                       ({"token": "a.b.c", "expirationTimestamp": "tomorrow"}, "body.expirationTimestamp"),
                       ({"token": "a.b.c"}, "body.expirationTimestamp")):
        with pytest.raises(BodyError, match=f"^{field}: "):
            TokenGrant.parse(bad)


def pod(node: str | None = "edge-1", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
            "spec": {"nodeName": node, "serviceAccountName": "robot", "volumes": [
                {"name": "kube-api-access-1", "projected": {"sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]}},
                {"name": "vault", "projected": {"sources": [
                    {"serviceAccountToken": {"audience": "vault", "expirationSeconds": 3607, "path": "t"}}]}}],
                     **spec}}


def test_a_node_gets_the_tokens_its_pods_project() -> None:
    assert token_refusal(pod(), "edge-1", TokenQuery.parse(BODY)) is None
    assert token_refusal(pod(), "edge-1", TokenQuery.parse({**BODY, "audiences": []})) is None


@pytest.mark.parametrize(("subject", "change", "reason"), [
    (None, {}, "pod ns/p does not exist"),
    (pod(node="edge-2"), {}, "pod ns/p is not bound to node edge-1"),
    (pod(node=None), {}, "is not bound to node edge-1"),
    (pod(), {"uid": "u-0"}, "pod ns/p is uid u-1, not u-0"),
    (pod(), {"serviceAccountName": "admin"}, "runs as service account robot, not admin"),
    (pod(), {"audiences": ["bank"]}, "projects no serviceAccountToken for audiences bank"),
    (pod(), {"expirationSeconds": 86400 * 365}, "with expirationSeconds 31536000"),
])
def test_every_other_token_is_refused_with_the_reason(subject: dict[str, Any] | None, change: dict[str, Any],
                                                      reason: str) -> None:
    refusal = token_refusal(subject, "edge-1", TokenQuery.parse({**BODY, **change}))
    assert refusal is not None
    assert reason in refusal


def test_the_default_service_account() -> None:
    assert pod_service_account({"spec": {}}) == "default"
    assert pod_service_account({"spec": {"serviceAccount": "old"}}) == "old"
    assert pod_service_account({"spec": {"serviceAccountName": "new", "serviceAccount": "old"}}) == "new"
