"""The root of the errors the edgehive CLI raises: a join, a compose stack, a local cluster that failed."""

from __future__ import annotations


class EdgehiveError(Exception):
    """A command of the edgehive CLI failed; the subclass says which part, its message what to do."""
