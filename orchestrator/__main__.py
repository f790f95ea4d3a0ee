from common.serve import main
from orchestrator.app import create_app, run_relay
from orchestrator.config import get_settings

main(
    package="orchestrator",
    history="orchestrator",
    default_port=8000,
    get_settings=get_settings,
    create_app=create_app,
    extra_commands={"relay": run_relay},
)
