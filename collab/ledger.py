"""LLM spend per day, kept where every process that spends can see it.

A SQLite file serves the processes of one machine; a PostgreSQL database
(``postgresql://...``) serves replicas on many, so that one daily budget holds
across all of them.
"""

from __future__ import annotations

import sqlite3
import time
from datetime import date
from pathlib import Path
from typing import Any

from collab.errors import ConfigurationError, ModelUnavailableError


def is_database_url(where: str | Path) -> bool:
    return isinstance(where, str) and where.startswith(("postgresql://", "postgres://"))


class Ledger:
    """The day's spend in US$: ``add`` after each remote call, ``spent_today`` before one."""

    def __init__(self, where: str | Path) -> None:
        self.where = where
        self.postgres = is_database_url(where)
        self._connections: Any = None
        if not self.postgres:
            Path(where).parent.mkdir(parents=True, exist_ok=True)
        # in a database of its own, a file keeps the name it always had
        self.table = "collab_spend" if self.postgres else "spend"
        kind = "DOUBLE PRECISION" if self.postgres else "REAL"
        self._run(f"CREATE TABLE IF NOT EXISTS {self.table} (day TEXT, usd {kind}, at {kind})")

    def _run(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        if self.postgres:
            return self._run_postgres(sql.replace("?", "%s"), args)
        db = sqlite3.connect(self.where, timeout=10)
        try:
            with db:  # one transaction
                return db.execute(sql, args).fetchall()
        finally:
            db.close()

    def _run_postgres(self, sql: str, args: tuple[object, ...]) -> list[tuple[Any, ...]]:
        try:
            import psycopg
            from psycopg_pool import PoolTimeout
        except ImportError as exc:
            raise ConfigurationError(
                "a postgresql:// ledger needs psycopg", hint="pip install 'collab[postgres]'"
            ) from exc
        try:
            with self._pool().connection(timeout=10) as db:
                cursor = db.execute(sql, args)
                return cursor.fetchall() if cursor.description else []
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise ModelUnavailableError(
                f"the spend ledger's database is unreachable: {exc}",
                hint="start PostgreSQL, or fix database_url",
            ) from exc

    def _pool(self) -> Any:
        """Connections kept open: a request reads and writes the ledger once each."""
        if self._connections is None:
            from psycopg_pool import ConnectionPool

            options = {"autocommit": True, "connect_timeout": 10}
            self._connections = ConnectionPool(
                str(self.where), kwargs=options, min_size=1, max_size=4, open=True
            )
        return self._connections

    def add(self, usd: float) -> None:
        if usd > 0:
            row = (date.today().isoformat(), usd, time.time())
            self._run(f"INSERT INTO {self.table} VALUES (?, ?, ?)", row)

    def spent_today(self) -> float:
        today = (date.today().isoformat(),)
        rows = self._run(f"SELECT SUM(usd) FROM {self.table} WHERE day = ?", today)
        return float(rows[0][0] or 0.0)
