"""hello-api's pre-deploy command: the schema it needs (idempotent, like a real migration)."""

from __future__ import annotations

import os

import psycopg


def main() -> None:
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS visits (id int PRIMARY KEY, count bigint)")
        conn.execute("INSERT INTO visits VALUES (1, 0) ON CONFLICT (id) DO NOTHING")
    print("hello-api: schema ready", flush=True)


if __name__ == "__main__":
    main()
