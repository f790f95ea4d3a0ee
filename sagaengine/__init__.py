"""A saga engine: orchestrated sagas over HTTP participants, persisted in PostgreSQL.

The engine knows nothing of the sagas an application runs: the application hands it their
definitions, the participants' base URLs, and a database; the engine persists each saga step by
step, calls the participants with an idempotency key per step and phase, retries what may be
retried, settles a pivot whose answer was lost, compensates in reverse order, recovers the
sagas of a process that died, and writes each outcome's event to an outbox in the same
transaction as the saga's last move. The guide is docs/engine.md.

Its public API, importable from here (loaded on first use) or from its module:

- declaring a saga (`sagaengine.definition`): SagaDefinition, Step, StepKind, StepContext,
  StartRules, Participant, RemoteCall, RetryPolicy, SagaOutcome, OutcomeEvent, SagaStatus;
- refusing (`sagaengine.errors`): Refusal;
- the sagas an application runs (`sagaengine.registry`): Registry;
- starting one (`sagaengine.starting`): start_saga, Lookup;
- running them (`sagaengine.runner`, `.postgres`, `.store`, `.http`, `.outbox`, `.metrics`):
  SagaRunner, PostgresSagaStore, Owner, build_clients, BusinessRefusal, TransientFault,
  OutboxRelay, EngineMetrics.

The participant kit is `sagaengine.participant`, the test kit `sagaengine.testing`.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sagaengine.definition import OutcomeEvent as OutcomeEvent
    from sagaengine.definition import Participant as Participant
    from sagaengine.definition import RemoteCall as RemoteCall
    from sagaengine.definition import RetryPolicy as RetryPolicy
    from sagaengine.definition import SagaDefinition as SagaDefinition
    from sagaengine.definition import SagaOutcome as SagaOutcome
    from sagaengine.definition import SagaStatus as SagaStatus
    from sagaengine.definition import StartRules as StartRules
    from sagaengine.definition import Step as Step
    from sagaengine.definition import StepContext as StepContext
    from sagaengine.definition import StepKind as StepKind
    from sagaengine.errors import Refusal as Refusal
    from sagaengine.http import BusinessRefusal as BusinessRefusal
    from sagaengine.http import TransientFault as TransientFault
    from sagaengine.http import build_clients as build_clients
    from sagaengine.metrics import EngineMetrics as EngineMetrics
    from sagaengine.outbox import OutboxRelay as OutboxRelay
    from sagaengine.postgres import PostgresSagaStore as PostgresSagaStore
    from sagaengine.registry import Registry as Registry
    from sagaengine.runner import SagaRunner as SagaRunner
    from sagaengine.starting import Lookup as Lookup
    from sagaengine.starting import start_saga as start_saga
    from sagaengine.store import Owner as Owner

# Where each public name lives: importing the package loads none of them (a saga definition
# needs no database driver), the first use of one loads its module.
_WHERE = {
    **dict.fromkeys(
        (
            "OutcomeEvent",
            "Participant",
            "RemoteCall",
            "RetryPolicy",
            "SagaDefinition",
            "SagaOutcome",
            "SagaStatus",
            "StartRules",
            "Step",
            "StepContext",
            "StepKind",
        ),
        "sagaengine.definition",
    ),
    "Refusal": "sagaengine.errors",
    "BusinessRefusal": "sagaengine.http",
    "TransientFault": "sagaengine.http",
    "build_clients": "sagaengine.http",
    "EngineMetrics": "sagaengine.metrics",
    "OutboxRelay": "sagaengine.outbox",
    "PostgresSagaStore": "sagaengine.postgres",
    "Registry": "sagaengine.registry",
    "SagaRunner": "sagaengine.runner",
    "Lookup": "sagaengine.starting",
    "start_saga": "sagaengine.starting",
    "Owner": "sagaengine.store",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'sagaengine' has no attribute {name!r}")
    return getattr(import_module(_WHERE[name]), name)
