"""The saga orchestrator: persists a state machine per saga, calls each service, and on failure
runs the compensations in reverse order. Owns the `saga_orchestrator` database."""
