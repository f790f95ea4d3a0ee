"""A subscription renewal saga, built on the engine as a library (docs/engine.md walks through it).

- `saga.py`: the definition, in one module (typed data, its participant, its steps);
- `service.py`: the participant it adds, a subscriptions service with its own database;
- `app.py`: the orchestrator with the renewal registered beside its own sagas (one line);
- `__main__.py`: `python -m examples.subscriptions service|orchestrator [--port N]`.
"""
