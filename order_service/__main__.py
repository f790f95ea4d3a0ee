from common.serve import main
from order_service.app import create_app
from order_service.config import get_settings

main(
    package="order_service",
    default_port=8001,
    get_settings=get_settings,
    create_app=create_app,
)
