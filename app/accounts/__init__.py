"""Who calls: API keys, session tokens, host-app JWTs; their scopes, budgets and rate limits."""
