from common.db import run_alembic_env
from sagaengine.schema import Base

run_alembic_env(Base.metadata)
