"""Topic patterns such as ``chat.{channel}`` or ``user.{id:int}``, compiled once at declaration.

Each ``{...}`` is one whole URI component. After the name may come a converter
(``str``, the default; ``int``) or a regular expression that the component
must match in full (``{slug:[a-z0-9-]+}``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbar.uri import check_component, check_name

_PARAM = re.compile(r"^\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<spec>.+))?\}$")

CONVERTERS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "str": (r"[^\s.#]+", str),
    "int": (r"-?[0-9]+", int),
}


#: Longer URIs never match: nothing legitimate needs them, and they cost every lookup.
MAX_URI_LENGTH = 512


class PatternError(ValueError):
    """A pattern that cannot be compiled; the message quotes it."""


@dataclass(frozen=True)
class Parameter:
    name: str
    regex: re.Pattern[str]
    convert: Callable[[str], Any]


@dataclass(frozen=True)
class TopicPattern:
    source: str
    parts: tuple[str | Parameter, ...]

    @property
    def params(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parts if isinstance(p, Parameter))

    @property
    def is_exact(self) -> bool:
        return not self.params

    @classmethod
    def compile(cls, source: str) -> TopicPattern:
        if not isinstance(source, str) or not source:
            raise PatternError(f"topic pattern {source!r} must be a non-empty string")
        parts: list[str | Parameter] = []
        for raw in source.split("."):
            match = _PARAM.match(raw)
            if match:
                parts.append(_parameter(source, match.group("name"), match.group("spec")))
                continue
            if "{" in raw or "}" in raw:
                raise PatternError(
                    f"topic pattern '{source}': '{raw}' mixes text and a parameter; "
                    "a parameter must be a whole URI part, e.g. 'chat.{channel}'"
                )
            try:
                check_name(raw, "URI part")
            except ValueError as exc:
                raise PatternError(f"topic pattern '{source}': {exc}") from None
            parts.append(raw)
        names = [p.name for p in parts if isinstance(p, Parameter)]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise PatternError(
                f"topic pattern '{source}': parameter '{duplicates[0]}' appears twice"
            )
        return cls(source, tuple(parts))

    @classmethod
    def compile_literal(cls, source: str, *, allow_empty: bool) -> TopicPattern:
        """A parameterless URI for prefix (``chat``) or wildcard (``chat..messages``) topics."""
        parts = source.split(".")
        for raw in parts:
            if raw == "" and allow_empty:
                continue
            try:
                check_name(raw, "URI part")
            except ValueError as exc:
                raise PatternError(f"topic pattern '{source}': {exc}") from None
        if not any(parts):
            raise PatternError(f"topic pattern {source!r} must name at least one URI part")
        return cls(source, tuple(parts))

    def match(self, uri: str) -> dict[str, Any] | None:
        """The parameters if ``uri`` matches this pattern, else None."""
        if len(uri) > MAX_URI_LENGTH:
            return None
        components = uri.split(".")
        if len(components) != len(self.parts):
            return None
        params: dict[str, Any] = {}
        for part, component in zip(self.parts, components, strict=True):
            if isinstance(part, str):
                if part != component:
                    return None
            elif part.regex.fullmatch(component):
                params[part.name] = part.convert(component)
            else:
                return None
        return params

    def build(self, **params: Any) -> str:
        """The concrete URI for ``params`` (the reverse of :meth:`match`)."""
        out = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            if part.name not in params:
                raise KeyError(f"topic pattern '{self.source}' needs parameter '{part.name}'")
            value = check_component(str(params[part.name]))
            if not part.regex.fullmatch(value):
                raise ValueError(
                    f"'{value}' does not fit parameter '{part.name}' of '{self.source}'"
                )
            out.append(value)
        return ".".join(out)


def _parameter(source: str, name: str, spec: str | None) -> Parameter:
    if spec is None or spec in CONVERTERS:
        regex, convert = CONVERTERS[spec or "str"]
        return Parameter(name, re.compile(regex), convert)
    try:
        regex_ = re.compile(spec)
    except re.error as exc:
        raise PatternError(f"topic pattern '{source}': bad regex for '{name}': {exc}") from None
    return Parameter(name, regex_, str)
