"""What every process shares and would otherwise copy: settings base, database bootstrap,
the JSON error model, token checks and test-only fault injection. The idempotency store is the
participant kit's (`sagaengine.participant`), which the services use directly.

It holds no domain code, and no service imports another service.
"""
