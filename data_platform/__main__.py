from common.serve import main
from data_platform.app import create_app
from data_platform.config import get_settings

main(
    package="data_platform",
    default_port=8009,
    get_settings=get_settings,
    create_app=create_app,
)
