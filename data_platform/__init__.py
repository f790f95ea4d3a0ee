"""The data platform (a mock): receives order and reservation events, storing each event id once.
Owns the `saga_data_platform` database. `POST /_control` makes it fail or slow down on purpose."""
