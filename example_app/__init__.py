"""A small FastAPI shop that records its usage with usage_stats (see README)."""
