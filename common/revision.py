"""`python -m common.revision <history> "<message>"`: autogenerate a revision for one service.

Compares the service's models with its database (which must be at head) and writes the draft to
`migrations/<history>/versions/`; read it before committing.
"""

import importlib
import sys

from alembic import command
from alembic.config import Config

from common.db import MIGRATIONS_ROOT, migrate


def main(history: str, message: str) -> None:
    settings = importlib.import_module(f"{history}.config").get_settings()
    migrate(settings.sqlalchemy_url, history)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_ROOT / history))
    config.attributes["url"] = settings.sqlalchemy_url
    command.revision(config, message=message, autogenerate=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
