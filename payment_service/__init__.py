"""Payment service: payments (approve, cancel = refund). Owns the `saga_payments` database."""
