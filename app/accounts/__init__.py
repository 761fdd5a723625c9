"""API keys and the callers they stand for."""
