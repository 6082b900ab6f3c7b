"""The root of the errors schemas raises: a message, key, name or token that breaks a wire format.

Each parser raises its own subclass (EnvelopeError, ResourceKeyError, TwinError, TokenError), which says
what was refused; catching WireFormatError takes every refusal of this package. It is a ValueError, so
that code catching ValueError around a parse takes these too.
"""

from __future__ import annotations


class WireFormatError(ValueError):
    """Input that does not follow one of edgehive's wire formats; the subclass says which."""
