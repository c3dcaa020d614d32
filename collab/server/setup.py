"""The workflows a config file describes: its SLM, its LLM endpoints, its policy and tools.

``default_workflows(settings)`` builds what ``collab serve`` and ``collab chat``
offer from ``collab.config.Settings`` (a TOML or YAML file, ``COLLAB_*``
variables). A config without ``policy``, ``tools`` or ``workflows`` gets the
demo's: ``collab-auto``, ``collab-slm``, ``collab-llm`` and ``collab-agent``.
Every mistake found here names the config file and the field.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool
from pydantic import ValidationError

from collab.agents.graph import build_graph
from collab.chat_model import CollabChatModel
from collab.config import Settings, ToolEntry, WorkflowEntry, config_error, config_file
from collab.errors import ConfigurationError
from collab.models.queue import ModelQueue
from collab.policy import Policy
from collab.server.workflows import Workflow, slm_queue
from collab.tools import make_tool
from collab.trace import Price

DEFAULT_WORKFLOWS = [
    WorkflowEntry(name="collab-auto", kind="pair"),
    WorkflowEntry(name="collab-slm", kind="slm"),
    WorkflowEntry(name="collab-llm", kind="llm"),
    WorkflowEntry(name="collab-agent", kind="agent"),
]


def default_workflows(
    settings: Settings | None = None, *, max_queue: int = 64
) -> dict[str, Workflow]:
    """The workflows of ``settings`` (see ``collab.config``), over its SLM and LLM."""
    from collab.config import load_settings
    from collab.models.defaults import make_llm, make_slm

    settings = settings or load_settings()
    policy, tools = policy_of(settings), tools_of(settings)
    database = settings.database_url.get_secret_value() if settings.database_url else None
    if database and policy.ledger is None:  # one daily budget across the replicas
        policy = policy.model_copy(update={"ledger": database})
    threads = checkpointer_for(settings, database)
    llm = make_llm(settings)
    slm = make_slm(settings)
    slm.engine  # noqa: B018 (loaded now: a model file that cannot load stops the server at start)
    queue = slm_queue(slm, max_queue)
    return {
        entry.name: _workflow(entry, slm, llm, policy, tools, queue, threads)
        for entry in settings.workflows or DEFAULT_WORKFLOWS
    }


def _workflow(
    entry: WorkflowEntry,
    slm: BaseChatModel,
    llm: BaseChatModel,
    policy: Policy,
    tools: list[BaseTool],
    queue: ModelQueue | None,
    threads: Any,
) -> Workflow:
    slm_name, llm_name = getattr(slm, "model", "slm"), getattr(llm, "model", "llm")
    price = getattr(llm, "price", None) or Price()
    if entry.kind == "pair":
        pair = CollabChatModel(slm=slm, llm=llm, policy=policy)
        about = entry.description or f"{slm_name} and {llm_name}, split by policy"
        return Workflow(entry.name, about, pair, price, queue)
    if entry.kind == "slm":
        return Workflow(entry.name, entry.description or f"{slm_name} alone", slm, price, queue)
    if entry.kind == "llm":
        return Workflow(entry.name, entry.description or f"{llm_name} alone", llm, price, None)
    graph = build_graph(
        slm, llm, tools=tools, policy=policy, tool_choice=entry.tool_choice, checkpointer=threads
    )
    about = entry.description or f"the agent graph with {', '.join(t.name for t in tools)}"
    return Workflow(entry.name, about, graph, price, queue, agent=True)


def checkpointer_for(settings: Settings, database: str | None) -> Any:
    """Where the agent's threads are kept: PostgreSQL when the config names a database
    (every replica sees every thread), else a SQLite file in the cache folder."""
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
    """The config's policy: inline, from its own file (relative to the config), or the demo's."""
    if settings.policy is None:
        from collab.demo import DEMO_POLICY

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
        from collab.agents.app import calculate, get_time

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
