import argparse

from common.serve import main
from orchestrator.app import create_app, run_relay
from orchestrator.config import Settings, get_settings
from sagaengine import purge


def relay(settings: Settings, argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator relay",
        description="Deliver the outbox's events to the data platform until SIGTERM, beside or "
        "instead of the orchestrators' own relays (ORCHESTRATOR_RELAY_ENABLED=false), as many "
        f"as you like. Settings from the environment: DATA_PLATFORM_URL "
        f"({settings.data_platform_url}), ORCHESTRATOR_RELAY_BATCH ({settings.relay_batch}), "
        f"ORCHESTRATOR_RELAY_INTERVAL ({settings.relay_interval} s). It never migrates the "
        "database.",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        help="serve its metrics (delivery lag, backlog) for Prometheus on this port, on --host "
        "(default: none)",
    )
    run_relay(settings, parser.parse_args(argv).metrics_port)


def purge_sagas(settings: Settings, argv: list[str]) -> None:
    purge.run(settings.sqlalchemy_url, argv, prog="python -m orchestrator purge")


main(
    package="orchestrator",
    default_port=8000,
    get_settings=get_settings,
    create_app=create_app,
    extra_commands={"relay": relay, "purge": purge_sagas},
)
