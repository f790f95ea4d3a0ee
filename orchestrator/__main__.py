import argparse

from common.serve import main
from orchestrator import maintenance
from orchestrator.app import create_app, run_relay
from orchestrator.config import Settings, get_settings


def relay(settings: Settings, argv: list[str]) -> None:
    argparse.ArgumentParser(prog="python -m orchestrator relay").parse_args(argv)
    run_relay(settings)


main(
    package="orchestrator",
    default_port=8000,
    get_settings=get_settings,
    create_app=create_app,
    extra_commands={"relay": relay, "purge": maintenance.run},
)
