"""Signed webhooks to the caller's own URL when their jobs and batches finish."""
