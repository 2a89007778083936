"""The bridge's YAML configuration, validated in full when it is loaded."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bridge.curve import check_key
from bridge.envelope import DEFAULT_MAX_FRAME_BYTES
from bridge.keys import load_bridge_keys
from bridge.routes import Route, RouteTable, TopicTemplate
from sandbar.config import (
    _ENV_REF,
    ConfigError,
    StrictModel,
    expand_env_values,
    load_yaml_config,
    validate_config,
)
from sandbar.metrics import MetricsSettings
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


_NO_KEYS = (
    "senders must authenticate: set zmq.curve_keys (the shipped config reads "
    "SANDBAR_BRIDGE_CURVE_KEYS) to the bridge's key file (`sandbar up` "
    "makes one in its run dir; elsewhere `sandbar curve-keys --init DIR` writes DIR/bridge.keys "
    "for the bridge and DIR/api.keys for senders), or zmq.curve_secret_key and "
    "zmq.curve_clients; only if every process that can reach the port is trusted, set "
    "zmq.insecure_allow_unauthenticated: true"
)


def _none_if_empty(value: object) -> object:
    """``${VAR:-}`` in the YAML: an unset variable means "not given"."""
    return None if value == "" else value


class ZmqSettings(StrictModel):
    bind: str = "tcp://127.0.0.1:5555"
    max_frame_bytes: int = Field(DEFAULT_MAX_FRAME_BYTES, gt=0)
    #: CURVE, required: a key file (bridge/keys.py), or the secret key and allowed senders'
    #: public keys given here (added to the file's)
    curve_keys: Annotated[Path | None, BeforeValidator(_none_if_empty)] = None
    curve_secret_key: Annotated[SecretStr | None, BeforeValidator(_none_if_empty)] = None
    curve_clients: tuple[str, ...] = ()
    #: the opt-out: no authentication, so any process that can reach ``bind`` sends events
    insecure_allow_unauthenticated: bool = False

    @model_validator(mode="before")
    @classmethod
    def _read_key_file(cls, data: object) -> object:
        path = _none_if_empty(data.get("curve_keys")) if isinstance(data, dict) else None
        if path is None:
            return data
        assert isinstance(data, dict)
        if _none_if_empty(data.get("curve_secret_key")) is not None:
            raise ValueError("give zmq.curve_keys or zmq.curve_secret_key, not both")
        try:
            keys = load_bridge_keys(str(path))
        except ConfigError as exc:
            raise ValueError(f"zmq.curve_keys: {exc}") from None
        listed = _split_keys(data.get("curve_clients") or ())
        if isinstance(listed, list | tuple):  # else the field's own check says what is wrong
            listed = [*keys.clients, *listed]
        return {**data, "curve_secret_key": keys.secret_key, "curve_clients": listed}

    @field_validator("curve_clients", mode="before")
    @classmethod
    def _split_clients(cls, keys: object) -> object:
        return _split_keys(keys)

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

    @property
    def keyless(self) -> bool:
        """Neither keys nor the opt-out: only ``--check`` accepts that (it needs no secrets)."""
        return self.curve_secret_key is None and not self.insecure_allow_unauthenticated

    @model_validator(mode="after")
    def _require_authentication(self, info: ValidationInfo) -> ZmqSettings:
        if self.keyless and (info.context or {}).get("check_only"):
            return self
        if self.insecure_allow_unauthenticated:
            if self.curve_secret_key is not None:
                raise ValueError(
                    "zmq.insecure_allow_unauthenticated is set together with CURVE keys: "
                    "remove the flag (or the keys)"
                )
            return self
        if self.curve_secret_key is None:
            raise ValueError(_NO_KEYS)
        if not self.curve_clients:
            raise ValueError(
                "CURVE is on but no sender may connect: list senders' public keys in "
                "zmq.curve_clients (or the key file's 'clients' line)"
            )
        return self


def _split_keys(keys: object) -> object:
    """Keys from an environment variable: one string, separated by spaces or commas."""
    if isinstance(keys, str):
        return tuple(keys.replace(",", " ").split())
    return keys


class PublishSettings(StrictModel):
    max_in_flight: int = Field(64, gt=0)
    buffer_size: int = Field(10_000, gt=0)
    gap_timeout: float = Field(15.0, gt=0)  # seconds to hold events waiting for a missing seq
    #: ids of the newest published events kept to drop resends (~230 B each: 100,000 is
    #: ~23 MB once full); a resend older than the window is published again
    duplicate_window: int = Field(100_000, gt=0, le=10_000_000)


class InspectSettings(StrictModel):
    #: events the bridge remembers having published (bridge/published.py), the newest kept
    published_records: int = Field(10_000, gt=0, le=1_000_000)


class RouteSettings(StrictModel):
    topic: Template
    retain: bool = False
    to_authids: str | None = None
    exclude_authids: str | None = None


class RoutesConfig(StrictModel):
    """The ``routes`` section: event name → topic. The API reads it too, to number events."""

    routes: dict[str, RouteSettings] = Field(min_length=1)
    #: where events' payload schemas are declared (``module:attribute`` of a
    #: sandbar.events.Namespace); the bridge checks every frame against them
    schemas: tuple[str, ...] = ()

    @field_validator("routes")
    @classmethod
    def _check_event_names(cls, routes: dict[str, RouteSettings]) -> dict[str, RouteSettings]:
        for name in routes:
            check_name(name, "event name")
        return routes

    def route_table(self) -> RouteTable:
        return RouteTable({name: Route(**dict(spec)) for name, spec in self.routes.items()})


class BridgeConfig(RoutesConfig):
    zmq: ZmqSettings = Field(default_factory=dict, validate_default=True)
    router: RouterConnection
    publish: PublishSettings = PublishSettings()
    inspect: InspectSettings = InspectSettings()
    #: ``/metrics`` (sandbar/metrics.py); ``--metrics-port`` or SANDBAR_BRIDGE_METRICS_PORT wins
    metrics: MetricsSettings = MetricsSettings()


def load_routes(path: str | Path = DEFAULT_PATH) -> RouteTable:
    """The route table of a bridge YAML, ignoring (and not requiring) its other sections."""
    return load_routes_config(path).route_table()


def load_routes_config(path: str | Path = DEFAULT_PATH) -> RoutesConfig:
    """The ``routes`` and ``schemas`` sections of a bridge YAML (what the API reads too)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the bridge routes ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    sections = {"routes": data.get("routes")}
    if "schemas" in data:
        sections["schemas"] = data["schemas"]
    routes = expand_env_values(sections, source=str(path))
    return validate_config(RoutesConfig, routes, source=str(path))


def load_config(
    path: str | Path = DEFAULT_PATH,
    env: Mapping[str, str] | None = None,
    *,
    check_only: bool = False,
) -> BridgeConfig:
    """Load and validate the bridge YAML (``${VAR}`` is taken from the environment).
    ``check_only``: for ``--check``, which validates a file without its secrets or keys."""
    return load_yaml_config(BridgeConfig, path, env, context={"check_only": check_only})


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
