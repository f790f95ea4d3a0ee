"""Order service: orders and their status transitions. Owns the `saga_orders` database."""
