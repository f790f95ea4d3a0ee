"""`python -m examples.subscriptions service|orchestrator [serve|migrate] [--port N]`: the
subscriptions service (port 8005), or the orchestrator with the renewal saga (port 8000, in place
of `python -m orchestrator`), each migrating its own database first."""

import sys

from common.serve import main
from examples.subscriptions import app, service
from orchestrator.config import get_settings as orchestrator_settings

USAGE = "usage: python -m examples.subscriptions service|orchestrator [serve|migrate] [--port N]"


def run(argv: list[str]) -> None:
    which, rest = (argv[0], argv[1:]) if argv else ("", [])
    prog = f"examples.subscriptions {which}"
    if which == "service":
        main(
            package=prog,
            default_port=8005,
            get_settings=service.get_settings,
            create_app=service.create_app,
            argv=rest,
        )
    elif which == "orchestrator":
        main(
            package=prog,
            default_port=8000,
            get_settings=orchestrator_settings,
            create_app=app.create_app,
            argv=rest,
        )
    else:
        sys.exit(USAGE)


run(sys.argv[1:])
