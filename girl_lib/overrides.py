"""Dotted-key overrides of a profile: ``--set sft.max_steps=50`` on the command line,
``OVERRIDES = {"sft.max_steps": 50}`` in a notebook. Values arrive as strings (or Python values)
and are converted to the field's declared type; an unknown key or a bad value is a one-line
:class:`~girl_lib.errors.GirlError`. Works on any dataclass tree (:class:`girl_lib.config.Profile`)."""
from __future__ import annotations

import types
import typing
from dataclasses import fields, is_dataclass, replace
from typing import Any, Mapping

from .errors import GirlError


def _coerce(value: Any, typ: Any, key: str) -> Any:
    """Convert a CLI string (or a notebook value) to the field's declared type."""
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v != ""]
        item_t = args[0] if args else str
        return tuple(_coerce(v, item_t, key) for v in value)
    if typ is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off"):
            return False
        raise GirlError(f"override '{key}': expected true/false, got '{value}'")
    if typ in (int, float, str):
        try:
            if typ is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return typ(value)
        except (TypeError, ValueError):
            raise GirlError(f"override '{key}': expected {typ.__name__}, got '{value}'") from None
    return value


def apply_overrides(profile, overrides: Mapping[str, Any] | None):
    """Return a copy of ``profile`` with dotted-key overrides applied (unknown keys are errors)."""
    if not overrides:
        return profile
    for key, value in overrides.items():
        parts = key.split(".")
        profile = _set(profile, parts, value, key)
    return profile


def _set(obj: Any, parts: list[str], value: Any, key: str) -> Any:
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in fields(obj)}
    head = parts[0]
    if head not in names:
        raise GirlError(f"unknown setting '{key}'; valid here: {', '.join(sorted(names))}")
    current = getattr(obj, head)
    if len(parts) == 1:
        if is_dataclass(current):
            raise GirlError(f"setting '{key}' is a section; name one of its fields")
        return replace(obj, **{head: _coerce(value, hints[head], key)})
    if not is_dataclass(current):
        raise GirlError(f"setting '{key}': '{head}' has no fields")
    return replace(obj, **{head: _set(current, parts[1:], value, key)})


def parse_override_args(items: list[str] | None) -> dict[str, str]:
    """Parse ``["sft.max_steps=3", ...]`` from ``--set`` into a dict."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise GirlError(f"--set '{item}': expected KEY=VALUE, e.g. --set sft.max_steps=3")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out
