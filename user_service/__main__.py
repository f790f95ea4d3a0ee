from common.serve import main
from user_service.app import create_app
from user_service.config import get_settings

main(
    package="user_service",
    default_port=8002,
    get_settings=get_settings,
    create_app=create_app,
)
