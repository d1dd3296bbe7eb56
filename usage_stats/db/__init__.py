"""The PostgreSQL boundary: the only modules that import asyncpg. The rest of the package goes
through `store.Store` (and the pure `maintenance.plan`, `settings.Settings`, `levels`, `rows`)."""
