from common.db import run_alembic_env
from data_platform.models import Base

run_alembic_env(Base.metadata)
