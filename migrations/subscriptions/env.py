from common.db import run_alembic_env
from examples.subscriptions.models import Base

run_alembic_env(Base.metadata)
