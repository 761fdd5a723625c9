"""Podrelay running for tests, in small parts that compose; its fixtures are in `fixtures`.

- `waiting`: a free port, and polling until a condition holds.
- `redis_server`, `postgres_server`: private servers a test may kill and start again.
- `processes`: workers and API processes of a deployment, and their environment.
- `ledger_views`: the ledger read into frozen views.
- `deployment`: `WorkerStack`, one isolated deployment; `factory`: building and closing them.
- `inprocess_api`: the API in the test process; `http_api`: calling it as a client does.
- `ledger`: ledgers on SQLite and PostgreSQL and job engines on them.
- `receiver`: an HTTP receiver for client webhooks.
"""
