"""The bridge's YAML configuration, validated in full when it is loaded."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BeforeValidator, Field, SecretStr, field_validator

from bridge.curve import check_key
from bridge.envelope import DEFAULT_MAX_FRAME_BYTES
from bridge.routes import Route, RouteTable, TopicTemplate
from sandbar.config import (
    _ENV_REF,
    ConfigError,
    StrictModel,
    expand_env_values,
    load_yaml_config,
    validate_config,
)
from sandbar.uri import check_name
from sandbar.wamp import RouterConnection
from topics.registry import load_app

DEFAULT_PATH = Path(os.environ.get("SANDBAR_BRIDGE_CONFIG", "config/bridge.yaml"))


def _compile_template(value: object) -> TopicTemplate:
    if isinstance(value, TopicTemplate):
        return value
    if not isinstance(value, str):
        raise ValueError("must be a topic URI such as 'articles' or 'chat.{channel}'")
    return TopicTemplate.compile(value)


Template = Annotated[TopicTemplate, BeforeValidator(_compile_template)]


class ZmqSettings(StrictModel):
    bind: str = "tcp://127.0.0.1:5555"
    max_frame_bytes: int = Field(DEFAULT_MAX_FRAME_BYTES, gt=0)
    #: CURVE (optional): the bridge's secret key, and the public keys of allowed senders
    curve_secret_key: SecretStr | None = None
    curve_clients: tuple[str, ...] = ()

    @field_validator("curve_clients")
    @classmethod
    def _check_clients(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(check_key(key) for key in keys)

    @field_validator("curve_secret_key")
    @classmethod
    def _check_secret(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None:
            check_key(key.get_secret_value())
        return key

    @field_validator("bind")
    @classmethod
    def _check_bind(cls, bind: str) -> str:
        if not bind.startswith(("tcp://", "ipc://", "inproc://")):
            raise ValueError(f"'{bind}' is not a ZeroMQ endpoint: use e.g. tcp://127.0.0.1:5555")
        return bind


class PublishSettings(StrictModel):
    max_in_flight: int = Field(64, gt=0)
    buffer_size: int = Field(10_000, gt=0)
    gap_timeout: float = Field(15.0, gt=0)  # seconds to hold events waiting for a missing seq


class RouteSettings(StrictModel):
    topic: Template
    retain: bool = False
    to_authids: str | None = None
    exclude_authids: str | None = None


class RoutesConfig(StrictModel):
    """The ``routes`` section: event name → topic. The API reads it too, to number events."""

    routes: dict[str, RouteSettings] = Field(min_length=1)

    @field_validator("routes")
    @classmethod
    def _check_event_names(cls, routes: dict[str, RouteSettings]) -> dict[str, RouteSettings]:
        for name in routes:
            check_name(name, "event name")
        return routes

    def route_table(self) -> RouteTable:
        return RouteTable({name: Route(**dict(spec)) for name, spec in self.routes.items()})


class BridgeConfig(RoutesConfig):
    zmq: ZmqSettings = ZmqSettings()
    router: RouterConnection
    publish: PublishSettings = PublishSettings()


def load_routes(path: str | Path = DEFAULT_PATH) -> RouteTable:
    """The route table of a bridge YAML, ignoring (and not requiring) its other sections."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the bridge routes ({exc})") from None
    routes = expand_env_values({"routes": data.get("routes")}, source=str(path))
    return validate_config(RoutesConfig, routes, source=str(path)).route_table()


def load_config(
    path: str | Path = DEFAULT_PATH, env: Mapping[str, str] | None = None
) -> BridgeConfig:
    """Load and validate the bridge YAML (``${VAR}`` is taken from the environment)."""
    return load_yaml_config(BridgeConfig, path, env)


def check_routes(config: RoutesConfig, app: str, source: str = "routes") -> None:
    """Refuse routes to topics the topics app ``app`` does not declare (browsers could
    never subscribe to them), naming each route and the nearest declared pattern."""
    problems = config.route_table().unreachable(load_app(app))
    if problems:
        raise ConfigError(f"{source}: {'; '.join(problems)} (topics app '{app}')")


#: fits every secret the file may hold: a ticket, or a Z85 CURVE key (40 characters)
STAND_IN = "0" * 40


def stand_ins(
    path: str | Path, env: Mapping[str, str] | None = None
) -> tuple[dict[str, str], list[str]]:
    """For ``--check``: the environment plus a stand-in for each ``${VAR}`` (no default)
    the file's values name but the environment lacks, so a file is checked without its secrets."""
    env = dict(os.environ if env is None else env)
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return env, []  # load_config reports it
    missing = sorted(
        {
            match.group(1)
            for value in _strings(data)
            for match in _ENV_REF.finditer(value)
            if match.group(2) is None and match.group(1) not in env
        }
    )
    env.update(dict.fromkeys(missing, STAND_IN))
    return env, missing


def _strings(data: object) -> Iterator[str]:
    if isinstance(data, str):
        yield data
    elif isinstance(data, dict):
        for value in data.values():
            yield from _strings(value)
    elif isinstance(data, list):
        for item in data:
            yield from _strings(item)
