"""What every process shares and would otherwise copy: settings base, database bootstrap,
the JSON error model, the idempotency store, token checks and test-only fault injection.

It holds no domain code, and no service imports another service.
"""
