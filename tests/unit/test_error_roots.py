"""Every package's own exceptions derive from that package's root (its errors module), so that one name
takes every failure of a package, and each keeps the builtin base its callers catch."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

from broker.errors import BrokerError
from cloud.errors import CloudError
from edge.edged.runtime import ContainerRuntimeError, ImagePullError
from edge.errors import EdgeError
from edgehive.errors import EdgehiveError
from runtime.bus import RequestError, RequestTimeout
from runtime.connection import PublishTimeout
from runtime.errors import ComponentRuntimeError
from runtime.settings import SettingsError
from schemas.envelope import EnvelopeError
from schemas.errors import WireFormatError

ROOTS: dict[str, type[Exception]] = {"schemas": WireFormatError, "runtime": ComponentRuntimeError,
                                     "broker": BrokerError, "cloud": CloudError, "edge": EdgeError,
                                     "edgehive": EdgehiveError}
def own_exceptions(package: str) -> list[type[BaseException]]:
    """The exception classes defined in ``package``'s modules (``__main__`` modules start a process)."""
    root = importlib.import_module(package)
    names = [package] + [m.name for m in pkgutil.walk_packages(root.__path__, f"{package}.")
                         if not m.name.endswith("__main__")]
    found = []
    for name in names:
        module = importlib.import_module(name)
        found += [value for value in vars(module).values() if inspect.isclass(value)
                  and issubclass(value, BaseException) and value.__module__ == name]
    return found


@pytest.mark.parametrize("package", sorted(ROOTS))
def test_each_exception_derives_from_its_packages_root(package: str) -> None:
    strays = [f"{e.__module__}.{e.__qualname__}" for e in own_exceptions(package) if not issubclass(e, ROOTS[package])]
    assert strays == []


def test_the_builtin_bases_are_kept() -> None:
    assert issubclass(RequestTimeout, TimeoutError)
    assert issubclass(PublishTimeout, TimeoutError)
    assert issubclass(RequestError, RuntimeError)
    assert issubclass(SettingsError, ValueError)
    assert issubclass(EnvelopeError, ValueError)
    assert issubclass(ImagePullError, ContainerRuntimeError)
    assert issubclass(ContainerRuntimeError, RuntimeError)
    assert str(RequestTimeout("no reply within 5 s")) == "no reply within 5 s"
