"""Which service account tokens a node may have: those of the pods bound to it, for what their specs project.

A node holds the credentials of the pods it runs and no others, as Kubernetes' node authorizer
and NodeRestriction admission allow a kubelet: the pod must be bound to the asking node, be the
incarnation the node names (its uid: a token is bound to one pod object and dies with it), and
run as the service account asked for. Beyond what a kubelet is held to, the audiences and the
expiry must be those of a ``serviceAccountToken`` projection in the pod's spec, so that a node
cannot mint tokens for audiences no pod of its own asked for.
"""

from __future__ import annotations

from typing import Any

from schemas.kubeobj import meta, node_name, spec_of
from schemas.tokens import TokenQuery, pod_service_account, projection_params


def projected_tokens(pod: dict[str, Any]) -> set[tuple[tuple[str, ...], int]]:
    """(audiences, expirationSeconds) of every serviceAccountToken projection in the pod's volumes."""
    found: set[tuple[tuple[str, ...], int]] = set()
    for volume in spec_of(pod).get("volumes") or []:
        if not isinstance(volume, dict):
            continue
        for source in (volume.get("projected") or {}).get("sources") or []:
            token = source.get("serviceAccountToken") if isinstance(source, dict) else None
            if isinstance(token, dict):
                found.add(projection_params(token))
    return found


def token_refusal(pod: dict[str, Any] | None, node: str, query: TokenQuery) -> str | None:
    """Why ``node`` may not have the token ``query`` asks for (None: it may)."""
    name = f"{query.namespace}/{query.pod}"
    if pod is None:
        return f"pod {name} does not exist"
    if node_name(pod) != node:
        return f"pod {name} is not bound to node {node}"
    if meta(pod).uid != query.uid:
        return f"pod {name} is uid {meta(pod).uid}, not {query.uid}"
    account = pod_service_account(pod)
    if account != query.service_account:
        return f"pod {name} runs as service account {account}, not {query.service_account}"
    if (query.audiences, query.expiration_seconds) not in projected_tokens(pod):
        audiences = ", ".join(query.audiences) or "the API server's"
        return (f"pod {name} projects no serviceAccountToken for audiences {audiences} with expirationSeconds "
                f"{query.expiration_seconds}")
    return None
