"""An embedded PostgreSQL (the `pgserver` package) for machines without a server at hand."""

from pathlib import Path

import psycopg

from common.settings import DEFAULT_PG_URL


def local_server_answers(url: str = DEFAULT_PG_URL) -> bool:
    try:
        with psycopg.connect(f"{url}/postgres", connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def start_embedded(data_dir: Path) -> str:
    """Start (or reuse) a server with its data in `data_dir`; it stops when this process exits.
    Returns its URL without a database name, in the form PG_URL takes."""
    import pgserver  # imported here: only this fallback needs it

    data_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data_dir, cleanup_mode="stop")  # type: ignore[attr-defined]
    uri: str = server.get_uri()
    return uri
