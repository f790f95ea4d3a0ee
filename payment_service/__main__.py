from common.serve import main
from payment_service.app import create_app
from payment_service.config import get_settings

main(
    package="payment_service",
    default_port=8003,
    get_settings=get_settings,
    create_app=create_app,
)
