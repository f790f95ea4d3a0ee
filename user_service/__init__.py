"""User service: users and their balances (deduct, charge). Owns the `saga_users` database."""
