"""Load ``module:attribute`` the way ``flask run`` and uvicorn do: from the current
directory too, with an error that says what is wrong and how to fix it."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

from sandbar.config import ConfigError


def load_object(spec: str, what: str, example: str, fits: Callable[[Any], bool]) -> Any:
    """Import ``spec`` (``module:attribute``); ``what`` names it in errors ("topics app"),
    ``fits`` says whether the object is the right kind (and lists candidates)."""
    module_name, colon, attribute = spec.partition(":")
    if not colon or not module_name or not attribute:
        raise ConfigError(f"{what} '{spec}' must be 'module:attribute', e.g. '{example}'")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and f"{module_name}.".startswith(f"{exc.name}."):
            raise ConfigError(
                f"{what} '{spec}': could not import module '{module_name}' from "
                f"{os.getcwd()}; run from your project's root or check the module name"
            ) from None
        raise ConfigError(f"{what} '{spec}': {_failure(exc)}") from exc
    except Exception as exc:
        raise ConfigError(f"{what} '{spec}': {_failure(exc)}") from exc
    if not hasattr(module, attribute):
        found = [name for name, value in vars(module).items() if fits(value)]
        hint = f"; it has {', '.join(repr(f'{module_name}:{n}') for n in found)}" if found else ""
        raise ConfigError(
            f"{what} '{spec}': attribute '{attribute}' not found in module '{module_name}'{hint}"
        )
    return getattr(module, attribute)


def _failure(exc: BaseException) -> str:
    """``importing it raised ValueError: … (my_topics.py, line 3)``: where the user's code failed."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" ({os.path.relpath(frames[-1].filename)}, line {frames[-1].lineno})" if frames else ""
    return f"importing it raised {type(exc).__name__}: {exc}{where}"
