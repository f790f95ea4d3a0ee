"""A saga engine: orchestrated sagas over HTTP participants, persisted in PostgreSQL.

See docs/engine.md for the guide. The engine knows nothing of the sagas an application runs:
the application hands it their definitions (`SagaDefinition`), the participants' base URLs,
and a database; the engine persists each saga step by step, calls the participants with an
idempotency key per step and phase, retries what may be retried, settles a pivot whose answer
was lost, compensates in reverse order, and writes each outcome's event to an outbox in the
same transaction as the saga's last move.
"""
