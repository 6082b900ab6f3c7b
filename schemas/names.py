"""Rules for the names that end up in topics and resource keys.

A name that reaches an MQTT topic must not contain ``/``, ``+`` or ``#``, or one node
could address another's topics; the Kubernetes rules (DNS-1123) already exclude
them, so we apply those everywhere.
"""

from __future__ import annotations

import re

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_KIND = re.compile(r"[a-z][a-z0-9]{0,62}")
_MODULE = re.compile(r"[a-z][a-z0-9-]{0,62}")


def is_node_name(text: object) -> bool:
    """Kubernetes Node names are DNS-1123 subdomains."""
    return isinstance(text, str) and _DNS_SUBDOMAIN.fullmatch(text) is not None


def is_namespace(text: object) -> bool:
    return isinstance(text, str) and _DNS_LABEL.fullmatch(text) is not None


def is_object_name(text: object) -> bool:
    return isinstance(text, str) and _DNS_SUBDOMAIN.fullmatch(text) is not None


def is_kind(text: object) -> bool:
    """Resource kinds as the edge sees them: lower case, letters and digits (``pod``, ``nodestatus``)."""
    return isinstance(text, str) and _KIND.fullmatch(text) is not None


def is_module_name(text: object) -> bool:
    """Component names such as ``metamanager`` or ``edge-1-bridge``."""
    return isinstance(text, str) and _MODULE.fullmatch(text) is not None


def require_node_name(text: str) -> str:
    if not is_node_name(text):
        raise ValueError(f"{text!r} is not a valid node name (a DNS-1123 subdomain: a-z, 0-9, '-', '.')")
    return text


def require_module_name(text: str) -> str:
    if not is_module_name(text):
        raise ValueError(f"{text!r} is not a valid module name (a-z, 0-9 and '-', starting with a letter)")
    return text
