"""Concert service: concerts, seats, seat holds with an expiry, reservations. Owns the
`saga_concerts` database."""
