"""What an attacker's probe of the REST API found (issue 12), each tried against the real
API: weak secrets refused at start."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.support.procs import BIN, ROOT, SECRET, TOKEN_SECRET, Proc, base_env, free_port

STRONG = "k3Jd9-Qp2LmXz7Rt5VbN8wYc4HsA6FgE"  # as token_urlsafe makes them
HOW_TO_MAKE_ONE = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def _env_example_secrets() -> dict[str, str]:
    """The secret placeholders a user gets by copying .env.example unchanged."""
    text = (ROOT / ".env.example").read_text()
    found = dict(re.findall(r"^(SANDBAR_\w*SECRET)=(\S+)", text, re.MULTILINE))
    assert set(found) == {"SANDBAR_BACKEND_SECRET", "SANDBAR_API_TOKEN_SECRET"}, found
    return found


PLACEHOLDERS = sorted(set(_env_example_secrets().values()))
DEV_VALUES = [
    "sandbar-development-secret-not-for-production",
    "sandbar-development-token-secret-not-for-production",
]
WEAK = ["x", "secret", "0123456789abcdef0123456789abcde", *PLACEHOLDERS, *DEV_VALUES]


# -- M3: weak, published and placeholder secrets are refused at start ----------------------


def _run(argv: list[str], env: dict[str, str], log_dir: Path) -> tuple[int | None, str]:
    """The exit code and output; ``None`` if it was still running after 15 s (it started)."""
    proc = Proc(Path(argv[0]).name, argv, env, log_dir).start()
    assert proc.process is not None
    try:
        code: int | None = proc.process.wait(15)
    except subprocess.TimeoutExpired:
        code = None
    proc.stop()  # its whole process group, gunicorn's workers too
    return code, proc.output()


@pytest.mark.parametrize("secret", WEAK)
def test_api_refuses_a_weak_token_secret(tmp_path, secret):
    env = {
        **base_env(),
        "SANDBAR_API_TOKEN_SECRET": secret,
        "SANDBAR_API_PORT": str(free_port()),
        "SANDBAR_API_DATABASE_URL": f"sqlite:///{tmp_path / 'api.db'}",
    }
    code, output = _run([str(BIN / "sandbar-api")], env, tmp_path)
    assert code == 2, output
    assert "SANDBAR_API_TOKEN_SECRET" in output
    assert HOW_TO_MAKE_ONE in output


@pytest.mark.parametrize("secret", WEAK)
def test_backend_services_refuse_a_weak_backend_secret(tmp_path, secret):
    env = {
        **base_env(),
        "SANDBAR_BACKEND_SECRET": secret,
        "SANDBAR_BRIDGE_BIND": f"tcp://127.0.0.1:{free_port()}",
    }
    argv = [str(BIN / "sandbar-bridge"), str(ROOT / "config" / "bridge.yaml")]
    code, output = _run(argv, env, tmp_path)
    assert code == 2, output
    assert "SANDBAR_BACKEND_SECRET" in output
    assert HOW_TO_MAKE_ONE in output


def test_create_app_refuses_a_weak_token_secret_given_in_its_config(tmp_path):
    """The path gunicorn's workers take (create_app), also when called without serve.py."""
    from api.app import create_app
    from api.config import ApiConfig
    from sandbar.config import ConfigError

    config = ApiConfig(
        database_url=f"sqlite:///{tmp_path / 'api.db'}",
        delivery="fire_and_forget",
        token_secret=PLACEHOLDERS[-1],
    )
    with pytest.raises(ConfigError, match="SANDBAR_API_TOKEN_SECRET"):
        create_app(config)


def test_development_mode_still_accepts_the_built_in_secrets(monkeypatch):
    from sandbar.secrets import DEV_SECRET, ensure_backend_secret, require_secret, weakness

    env = {"SANDBAR_DEV": "1"}
    assert ensure_backend_secret(env) == DEV_SECRET
    assert env["SANDBAR_BACKEND_SECRET"] == DEV_SECRET
    assert require_secret("SANDBAR_API_TOKEN_SECRET", "dev-token", env) == "dev-token"
    assert require_secret("SANDBAR_API_TOKEN_SECRET", "dev-token", {}, value=STRONG) == STRONG
    for secret in (SECRET, TOKEN_SECRET):  # what the tests and the compose tests run with
        assert weakness(secret) is None
