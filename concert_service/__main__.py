from common.serve import main
from concert_service.app import create_app
from concert_service.config import get_settings

main(
    package="concert_service",
    default_port=8004,
    get_settings=get_settings,
    create_app=create_app,
)
