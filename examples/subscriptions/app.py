"""The orchestrator, running the renewal saga beside its own: the one line that registers it.

Run it in place of `python -m orchestrator` (`python -m examples.subscriptions orchestrator`): it
runs every saga the orchestrator runs, plus renewals. Every orchestrator sharing a database must
know every saga in it, or its recovery would take over sagas it has no definition for.
"""

from fastapi import FastAPI

from examples.subscriptions.saga import RENEWAL_SAGA
from orchestrator import definitions
from orchestrator.app import create_app as create_orchestrator
from orchestrator.config import Settings
from sagaengine.registry import Registry

SAGAS = Registry(*definitions.SAGAS.current.values(), RENEWAL_SAGA)


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_orchestrator(settings, sagas=SAGAS)
