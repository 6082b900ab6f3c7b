"""Settings for every edgehive process, from a YAML file, the environment and flags.

Each process declares its settings as a dataclass. A value comes from, highest
first: a command-line flag (``--node-name``), an environment variable
(``EDGEHIVE_NODE_NAME``), the YAML file given by ``--config`` (key ``node_name`` or
``node-name``), then the field's default. One loader for all processes means one
set of rules for operators to learn.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from runtime.errors import ComponentRuntimeError

T = TypeVar("T")
ENV_PREFIX = "EDGEHIVE_"


class SettingsError(ComponentRuntimeError, ValueError):
    """A setting is missing or malformed; the message says which and where it came from."""


def _scalar_type(hint: Any) -> tuple[type, bool, bool]:
    """(base type, optional, repeated) for the field types we support."""
    optional = False
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        if len(args) != 1:
            raise TypeError(f"unsupported settings type {hint}")
        hint = args[0]
        origin = typing.get_origin(hint)
    if origin is tuple:
        return typing.get_args(hint)[0], optional, True
    return hint, optional, False


def _convert(raw: Any, base: type, repeated: bool, source: str, name: str) -> Any:
    if repeated:
        items = raw if isinstance(raw, list | tuple) else [p for p in str(raw).split(",") if p.strip()]
        return tuple(_convert(item, base, False, source, name) for item in items)
    try:
        if base is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{raw!r} is not a boolean (true/false)")
        if base in (int, float, str, Path):
            return base(raw)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"setting {name} from {source}: {exc}") from None
    raise TypeError(f"unsupported settings type {base} for {name}")


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One ``--flag`` per field, defaulting to None so that unset flags fall through to env and file."""
    hints = typing.get_type_hints(cls)
    parser.add_argument("--config", type=Path, metavar="FILE", help="YAML settings file")
    for f in dataclasses.fields(cls):
        base, _optional, repeated = _scalar_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        env = ENV_PREFIX + f.name.upper()
        if base is bool:
            parser.add_argument(flag, dest=f.name, default=None, action=argparse.BooleanOptionalAction,
                                help=f"{help_text} (env {env})")
        else:
            parser.add_argument(flag, dest=f.name, default=None, action="append" if repeated else "store",
                                metavar=f.name.upper(), help=f"{help_text} (env {env})")


def load(cls: type[T], args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> T:
    """Build ``cls`` from parsed flags, then the environment, then ``--config``, then defaults."""
    environ = os.environ if environ is None else environ
    file_values: dict[str, Any] = {}
    config_path: Path | None = getattr(args, "config", None) or (
        Path(environ[ENV_PREFIX + "CONFIG"]) if ENV_PREFIX + "CONFIG" in environ else None)
    if config_path is not None:
        import yaml  # noqa: PLC0415 (only a process given a settings file pays for YAML: none of edgehive up's)

        try:
            loaded = yaml.safe_load(config_path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SettingsError(f"cannot read settings file {config_path}: {exc}") from None
        if not isinstance(loaded, dict):
            raise SettingsError(f"settings file {config_path} must hold a mapping of setting: value")
        file_values = {str(k).replace("-", "_"): v for k, v in loaded.items()}
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(file_values) - known)
    if unknown:
        raise SettingsError(f"settings file {config_path} has unknown settings: {', '.join(unknown)} "
                            f"(known: {', '.join(sorted(known))})")

    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        base, _optional, repeated = _scalar_type(hints[f.name])
        env = ENV_PREFIX + f.name.upper()
        flag_value = getattr(args, f.name, None)
        if flag_value is not None:
            values[f.name] = _convert(flag_value, base, repeated, "--" + f.name.replace("_", "-"), f.name)
        elif env in environ:
            values[f.name] = _convert(environ[env], base, repeated, env, f.name)
        elif f.name in file_values:
            raw = file_values[f.name]
            values[f.name] = None if raw is None else _convert(raw, base, repeated, str(config_path), f.name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise SettingsError(f"setting {f.name} is required: pass --{f.name.replace('_', '-')}, "
                                f"set {env}, or put {f.name}: in the --config file")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"invalid settings: {exc}") from None


def parse(cls: type[T], argv: Sequence[str] | None, *, prog: str, description: str = "") -> T:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_arguments(parser, cls)
    args = parser.parse_args(argv)
    try:
        return load(cls, args)
    except SettingsError as exc:
        parser.error(str(exc))
