"""The PostgreSQL boundary: the only modules that import asyncpg."""
