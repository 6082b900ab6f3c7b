"""Kubernetes quantities (``128Mi``, ``500m``, ``2``) as numbers: read by the pod spec and the downward API."""

from __future__ import annotations

import re
from typing import Any

_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_FACTORS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
            "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}


def quantity(text: Any) -> float | None:
    """The number of base units (cores, bytes) ``text`` stands for; None when it is not a quantity."""
    match = _QUANTITY.match(str(text).strip())
    if match is None:
        return None
    number, suffix = float(match.group(1)), match.group(2)
    if suffix == "m":
        return number / 1000
    return number * _FACTORS[suffix]
