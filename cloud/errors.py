"""The root of the errors the cloud components raise: the API server refusing, a join or report refused."""

from __future__ import annotations


class CloudError(Exception):
    """A cloud component could not do what it was asked; the subclass says what failed."""
