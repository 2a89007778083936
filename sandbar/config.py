"""Typed, strict configuration shared by every Sandbar component.

Each component declares one pydantic model deriving from :class:`StrictModel`.
Unknown keys are rejected and every error names the offending key and the fix,
so a typo fails at load time with one readable line instead of at first use.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = [
    "ConfigError",
    "StrictModel",
    "expand_env",
    "expand_env_values",
    "load_yaml_config",
    "validate_config",
]

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

M = TypeVar("M", bound=BaseModel)


class ConfigError(Exception):
    """A configuration problem, worded for the person who has to fix it."""


class StrictModel(BaseModel):
    """Base for config objects: unknown keys rejected, immutable after load."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def expand_env(
    text: str,
    env: Mapping[str, str] | None = None,
    *,
    source: str = "config",
    defaults_only: bool = False,
) -> str:
    """Replace ``${VAR}`` and ``${VAR:-default}`` with values from the environment.

    A referenced variable that is unset and has no default is an error naming it.
    With ``defaults_only``, plain ``${VAR}`` references are left untouched (the
    router template leaves those for Crossbar, which fills in secrets itself).
    """
    env = os.environ if env is None else env

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if defaults_only and default is None:
            return match.group(0)
        value = env.get(name)
        if value is not None:
            return value
        if default is not None:
            return default
        raise ConfigError(
            f"{source}: environment variable {name} is not set; "
            f"export {name}=... or write ${{{name}:-default}} in the file"
        )

    return _ENV_REF.sub(substitute, text)


def _key_path(loc: tuple[int | str, ...]) -> str:
    """``routes["article.created"].retain``: dotted keys are quoted so the path stays readable."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.isidentifier():
            path += f".{part}" if path else part
        else:
            path += f'["{part}"]'
    return path or "<top level>"


def _describe(error: dict[str, Any]) -> str:
    key = _key_path(tuple(error["loc"]))
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown key '{key}': remove it or check its spelling"
    if kind == "missing":
        return f"missing key '{key}': add it"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"key '{key}': {message}"


def validate_config(
    model: type[M], data: Any, *, source: str = "config", context: dict[str, Any] | None = None
) -> M:
    """Build ``model`` from plain data, turning pydantic's errors into one ConfigError.
    ``context`` reaches the model's validators (e.g. ``{"check_only": True}``)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of keys at the top level")
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        problems = "; ".join(_describe(dict(err)) for err in exc.errors())
        raise ConfigError(f"{source}: {problems}") from None


def load_yaml_config(
    model: type[M],
    path: str | Path,
    env: Mapping[str, str] | None = None,
    context: dict[str, Any] | None = None,
) -> M:
    """Read a YAML file, expand ``${VAR}`` references and validate it as ``model``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML {_yaml_where(exc)}") from None
    data = expand_env_values(data, env, source=str(path))
    return validate_config(model, data, source=str(path), context=context)


def _yaml_where(exc: yaml.YAMLError) -> str:
    """One line: where the parser gave up and why."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is None:
        return f"({problem})"
    return f"at line {mark.line + 1}, column {mark.column + 1} ({problem})"


def expand_env_values(
    data: Any, env: Mapping[str, str] | None = None, *, source: str = "config"
) -> Any:
    """Apply :func:`expand_env` to every string value of parsed YAML (keys stay literal)."""
    if isinstance(data, str):
        return expand_env(data, env, source=source)
    if isinstance(data, dict):
        return {key: expand_env_values(value, env, source=source) for key, value in data.items()}
    if isinstance(data, list):
        return [expand_env_values(item, env, source=source) for item in data]
    return data
