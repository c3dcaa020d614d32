"""What a config file names, made real: its policy, its tools, where threads are kept.

``collab serve``, ``collab chat`` and ``langgraph dev`` (``collab.agents.app``)
build their agents from these. Every mistake found here names the config file
and the field.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool
from pydantic import ValidationError

from collab.config import Settings, ToolEntry, config_error, config_file
from collab.errors import ConfigurationError
from collab.policy import Match, Policy, Rule
from collab.tools import make_tool

# without a policy in the config: the SLM answers, code, math and personal data go to
# the LLM (the personal data redacted)
DEMO_POLICY = Policy(
    default="slm_only",
    privacy="redact",
    rules=[
        Rule(name="hard tasks", when=Match(task=["code", "math"]), strategy="llm_only"),
        Rule(name="customer replies", when=Match(sensitive=True), strategy="llm_only"),
    ],
)


def checkpointer_for(settings: Settings) -> Any:
    """Where the agent's threads are kept: PostgreSQL when the config names a database
    (every replica sees every thread), else a SQLite file in the cache folder."""
    database = database_of(settings)
    if database is None:
        import sqlite3

        from langgraph.checkpoint.sqlite import SqliteSaver

        path = settings.cache_dir / "threads.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteSaver(sqlite3.connect(path, check_same_thread=False))
    try:
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool
    except ImportError as exc:
        raise config_error(
            "database_url", "PostgreSQL needs langgraph-checkpoint-postgres and psycopg",
            hint="pip install 'collab[postgres]'",
        ) from exc  # fmt: skip
    options = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
    pool = ConnectionPool(database, kwargs=options, min_size=1, max_size=8, open=False)
    try:
        pool.open(wait=True, timeout=15)
    except Exception as exc:  # psycopg_pool.PoolTimeout, psycopg.OperationalError
        raise config_error(
            "database_url", f"cannot connect ({exc})", hint="start PostgreSQL or fix the URL"
        ) from exc
    saver = PostgresSaver(pool)  # type: ignore[arg-type]
    saver.setup()
    return saver


def policy_of(settings: Settings) -> Policy:
    """The config's policy (inline, from its own file relative to the config, or the
    demo's), its daily spend kept in the config's database when it names one."""
    policy = _given_policy(settings)
    database = database_of(settings)
    if database and policy.ledger is None:  # one daily budget across the replicas
        policy = policy.model_copy(update={"ledger": database})
    return policy


def database_of(settings: Settings) -> str | None:
    return settings.database_url.get_secret_value() if settings.database_url else None


def _given_policy(settings: Settings) -> Policy:
    if settings.policy is None:
        return DEMO_POLICY
    if isinstance(settings.policy, Path):
        where = config_file()
        path = settings.policy.expanduser()
        if not path.is_absolute() and where is not None:
            path = where.parent / path
        return Policy.from_file(path)
    try:
        return Policy.model_validate(settings.policy)
    except ValidationError as exc:
        problems = "; ".join(
            f"policy.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise config_error("", problems, hint="see collab.policy.Policy for the fields") from exc


def tools_of(settings: Settings) -> list[BaseTool]:
    """The config's tools, imported and made; none given: the demo's two."""
    if not settings.tools:
        from collab.agents.demo_tools import calculate, get_time

        return [make_tool(get_time), make_tool(calculate)]
    made = []
    for i, entry in enumerate(settings.tools):
        obj = _imported(i, entry)
        marks = entry.model_dump(include={"requires_approval", "verify", "timeout_s"})
        try:
            made.append(make_tool(obj, **marks))
        except ConfigurationError as exc:
            raise config_error(f"tools.{i}.path", exc.message, hint=exc.hint or "") from exc
    names = [t.name for t in made]
    if len(set(names)) != len(names):
        raise config_error("tools", f"two tools share a name ({names})", hint="rename one")
    return made


def _imported(index: int, entry: ToolEntry) -> Any:
    """What ``entry.path`` (``package.module:attribute``) names, importable from the config's
    folder and the current one, as ``uvicorn`` does."""
    where = config_file()
    for folder in (Path.cwd(), where.parent if where else None):
        if folder is not None and str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    module_name, _, attribute = entry.path.partition(":")
    field = f"tools.{index}.path"
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise config_error(
            field, f"cannot import {module_name!r} ({exc})",
            hint="give package.module:function, importable from the current folder",
        ) from exc  # fmt: skip
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise config_error(
                field, f"{module_name!r} has no {attribute!r}", hint="check the name after ':'"
            )
        found = getattr(found, part)
    return found
