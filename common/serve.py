"""`python -m <package> [serve|migrate|<extra command>] [--port N]`: migrate the process's
database, then serve; or run an extra command (it parses its own options, and never migrates)."""

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from types import FrameType
from typing import TypeVar

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from common import logs, tracing
from common.db import migrate
from common.settings import ServiceSettings

log = logging.getLogger(__name__)

S = TypeVar("S", bound=ServiceSettings)


def main(
    *,
    package: str,
    default_port: int,
    get_settings: Callable[[], S],
    create_app: Callable[[S], FastAPI],
    extra_commands: dict[str, Callable[[S, list[str]], None]] | None = None,
    argv: list[str] | None = None,
) -> None:
    extra_commands = extra_commands or {}
    # An extra command gets the arguments this parser does not know (its own options, and
    # --help), and parses them itself.
    parser = argparse.ArgumentParser(prog=f"python -m {package}", add_help=False)
    parser.add_argument(
        "command", nargs="?", choices=["serve", "migrate", *extra_commands], default="serve"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    parser.add_argument("-h", "--help", action="store_true", help="show this help and exit")
    args, rest = parser.parse_known_args(argv)
    if args.command in extra_commands:
        rest += ["--help"] if args.help else []
    elif args.help:
        parser.exit(message=parser.format_help())
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")

    try:
        settings = get_settings().model_copy(update={"port": args.port, "host": args.host})
    except ValidationError as exc:
        sys.exit(f"{package}: invalid settings: {exc}")
    logs.configure(package, settings.log_level)
    tracing.configure(package)  # before any connection is opened: its statements are traced
    if args.command in extra_commands:
        # Its own options and --help first; it touches the database only if it needs to, and
        # never migrates it (a purge or a relay changing a schema would be a surprise).
        extra_commands[args.command](settings, rest)
        return
    migrate(settings.sqlalchemy_url, settings.migrations)
    log.info(
        "%s: database %s is at the latest migration", package, settings.sqlalchemy_url.database
    )
    if args.command == "migrate":
        return
    if settings.uses_dev_tokens:
        log.warning(
            "%s: using the documented dev ADMIN_TOKEN/SERVICE_TOKEN (APP_ENV=%s); "
            "set both for anything but local development",
            package,
            settings.app_env,
        )
    if settings.fault_injection:
        log.warning("%s: fault injection is ENABLED (POST /_faults)", package)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=settings.log_level.lower(),
        log_config=None,  # keep our JSON logging (common.logs)
        access_log=False,  # common.logs writes one line per request, with its request id
        timeout_graceful_shutdown=max(int(settings.shutdown_grace_seconds), 1),
    )
    Server(config, app).run()


class Server(uvicorn.Server):
    """uvicorn's server, which tells the app the moment it is asked to stop (SIGTERM, Ctrl-C),
    through `app.state.begin_stop` if the app set one: uvicorn itself only tells the app once
    every open request has ended, and an app must stop taking work before that (the
    orchestrator's recovery and starts)."""

    def __init__(self, config: uvicorn.Config, app: FastAPI):
        super().__init__(config)
        self.app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            begin_stop = getattr(self.app.state, "begin_stop", None)
            if begin_stop is not None:
                # A signal handler interrupts the event loop's thread anywhere: the loop runs
                # the callback at its next turn.
                asyncio.get_running_loop().call_soon_threadsafe(begin_stop)
        super().handle_exit(sig, frame)
