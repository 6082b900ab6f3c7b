"""The root of the errors the edge components raise: a store, a pod spec, podman, an object refused."""

from __future__ import annotations


class EdgeError(Exception):
    """An edge component could not do what it was asked; the subclass says what failed."""
