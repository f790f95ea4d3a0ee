"""Applications built on the saga engine outside the orchestrator package (docs/engine.md)."""
