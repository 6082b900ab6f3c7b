"""The root of the errors the component runtime raises (bus, connection, settings, PKI).

Each keeps the builtin base its callers catch (a timeout is a TimeoutError, a bad setting a ValueError);
ComponentRuntimeError is the one name that takes every failure of this package. A leaf: it imports
nothing, so that runtime.pki, which both cloud/ and broker/ import, stays one.
"""

from __future__ import annotations


class ComponentRuntimeError(Exception):
    """The component runtime failed or refused something; the subclass says what."""
