"""Serve the API with gunicorn: pre-fork workers, each with its own app and ZeroMQ socket."""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger
from pydantic import Field

from api import metrics as api_metrics
from api.app import DEFAULT_FACTORY, check_routes, load_factory
from api.config import ApiConfig
from api.db import DatabaseConfigError, create_schema, make_engine, wait_for_database
from api.tracing import ENVIRON_KEY
from sandbar import metrics, tracing
from sandbar.config import ConfigError, StrictModel
from sandbar.heap import freeze_startup_heap
from sandbar.lifetime import die_with_parent
from sandbar.logs import formatter, log_format, setup_logging
from sandbar.metrics import MetricsSettings
from topics.registry import load_app

METRICS_DIR_VAR = "SANDBAR_API_METRICS_DIR"
ACCESS_LOG_FORMAT = '%(h)s "%(r)s" %(s)s %(b)sB %(M)sms pid=%(p)s'


class ServeConfig(StrictModel):
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = Field(2, gt=0)
    threads: int = Field(4, gt=0)
    #: the app factory, as module:function, called with ``api`` (your own, or the kit's)
    app: str = DEFAULT_FACTORY
    api: ApiConfig = ApiConfig()
    #: /metrics, served by the gunicorn master on its own port (0: off)
    metrics: MetricsSettings = MetricsSettings()
    #: the workers' metric files (PROMETHEUS_MULTIPROC_DIR), emptied at start; None: a
    #: temporary one of this server's own
    metrics_dir: Path | None = None


class GunicornLogger(Logger):
    """gunicorn's logger in the format every Sandbar service logs in (sandbar/logs.py)."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        if log_format() != "json":  # gunicorn's own text lines stay as they were
            return
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(formatter("api"))

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        token = tracing.current.set(environ.get(ENVIRON_KEY))  # after the request's teardown
        try:
            super().access(resp, req, environ, request_time)
        finally:
            tracing.current.reset(token)


class _Gunicorn(BaseApplication):
    def __init__(self, config: ServeConfig) -> None:
        self.serve_config = config
        super().__init__()

    def load_config(self) -> None:
        c = self.serve_config
        settings: dict[str, Any] = {
            "bind": f"{c.host}:{c.port}",
            "workers": c.workers,
            "threads": c.threads,
            "worker_class": "gthread" if c.threads > 1 else "sync",
            "accesslog": "-",
            "access_log_format": ACCESS_LOG_FORMAT,
            "graceful_timeout": 10,
            "proc_name": "sandbar-api",
            # each worker has just built its app: keep that out of full GC passes
            "post_worker_init": lambda worker: freeze_startup_heap(),
            # a worker outlives a SIGKILLed master otherwise, holding the port
            "post_fork": lambda arbiter, worker: die_with_parent(worker.ppid),
            # gunicornc's socket is one path per user, shared by every stack: unused here
            "control_socket_disable": True,
            # SANDBAR_LOG_FORMAT for gunicorn's own lines too; the access line carries the trace
            "logger_class": GunicornLogger,
        }
        if c.metrics.port:  # counts stay summed; the dead worker's files are no longer live
            settings["child_exit"] = api_metrics.worker_exited
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        app = load_factory(self.serve_config.app)(self.serve_config.api)
        check_routes(app)  # what your factory forwarded after create_app, too
        return app


def run(config: ServeConfig) -> None:
    """Wait for the database, migrate it once in the master, then serve until SIGTERM."""
    engine = make_engine(config.api.database_url)
    try:
        wait_for_database(engine, config.api.database_wait_seconds)
        create_schema(engine)
    except DatabaseConfigError as exc:
        print(f"sandbar-api: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        engine.dispose()  # the workers open their own; nothing of it crosses the forks
    if config.metrics.port:
        api_metrics.enable_multiprocess(config.metrics_dir or _own_metrics_dir())
        api_metrics.serve_from_master(config.metrics, config.api.database_url)
    _Gunicorn(config).run()


def _own_metrics_dir() -> Path:
    """A directory no other server shares (two masters in one would wipe each other's)."""
    directory = Path(tempfile.mkdtemp(prefix="sandbar-api-metrics-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["users"]:
        from api.users_cli import main as users_main

        setup_logging("WARNING", "api")
        raise SystemExit(users_main(argv[1:]))
    if argv[:1] == ["db"]:
        from api.db_cli import main as db_main

        setup_logging("WARNING", "api")
        raise SystemExit(db_main(argv[1:]))
    env = os.environ
    parser = argparse.ArgumentParser(prog="sandbar-api", description="Sandbar REST API")
    parser.add_argument("--host", default=env.get("SANDBAR_API_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(env.get("SANDBAR_API_PORT", 5000)))
    parser.add_argument("--workers", type=int, default=int(env.get("SANDBAR_API_WORKERS", 2)))
    parser.add_argument("--threads", type=int, default=int(env.get("SANDBAR_API_THREADS", 4)))
    parser.add_argument(
        "--app",
        default=env.get("SANDBAR_API_APP", DEFAULT_FACTORY),
        help=f"the app factory, module:function (env SANDBAR_API_APP; default {DEFAULT_FACTORY})",
    )
    parser.add_argument(
        "--metrics-dir",
        type=Path,
        default=env.get(METRICS_DIR_VAR) or None,
        help=f"the workers' metric files, emptied at start (env {METRICS_DIR_VAR}; "
        "default: a temporary directory)",
    )
    metrics.add_arguments(parser, "api")
    args = parser.parse_args(argv)
    setup_logging(service="api")
    try:
        api = ApiConfig.from_env()
        served = metrics.settings_from(args, "api")
        del args.metrics_port, args.metrics_host
        config = ServeConfig(**vars(args), api=api, metrics=served)
        load_app(api.topics_app)  # one line here, not a traceback from every worker
        load_factory(config.app)
        api.signing_secret()  # fail here, once, not in every worker
        tracing.check()
    except (ConfigError, ValueError) as exc:
        print(f"sandbar-api: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    run(config)


if __name__ == "__main__":
    main()
