from common.db import run_alembic_env
from concert_service.models import Base

run_alembic_env(Base.metadata)
