"""`python -m example_app`: serve the example on 127.0.0.1 (embedded PostgreSQL unless USAGE_STATS_DSN is set)."""

from __future__ import annotations

import logging
import os

import uvicorn

from usage_stats.embedded import SERVER_LOGGER

from .app import create_app


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    # The embedded server's wheel logs each command it runs with all its output (initdb's is pages long).
    logging.getLogger(SERVER_LOGGER).setLevel(logging.WARNING)
    port = int(os.environ.get("PORT", "8000"))
    print(f"usage_stats example: http://127.0.0.1:{port}/  (statistics at /stats)")
    print(f"dashboard: sign in as admin at http://127.0.0.1:{port}/login?name=admin, then open /usage/")
    uvicorn.run(create_app(), host="127.0.0.1", port=port)


if __name__ == "__main__":
    main()
