from common.db import run_alembic_env
from orchestrator.models import Base

run_alembic_env(Base.metadata)
