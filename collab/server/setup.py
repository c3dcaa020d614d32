"""The workflows a config file describes, over its SLM and its LLM endpoints.

``default_workflows(settings)`` builds what ``collab serve`` and ``collab chat``
offer from ``collab.config.Settings`` (a TOML or YAML file, ``COLLAB_*``
variables). A config without ``policy``, ``tools`` or ``workflows`` gets the
demo's: ``collab-auto``, ``collab-slm``, ``collab-llm`` and ``collab-agent``.
Every mistake found here names the config file and the field.
"""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.tools import BaseTool

from collab.agents.configured import checkpointer_for, policy_of, tools_of
from collab.agents.graph import build_graph
from collab.chat_model import CollabChatModel
from collab.config import Settings, WorkflowEntry
from collab.models.queue import ModelQueue
from collab.policy import Policy
from collab.server.workflows import DEFAULT_WORKFLOWS, Workflow, slm_queue, workflow
from collab.trace import Price


def default_workflows(
    settings: Settings | None = None, *, max_queue: int = 64
) -> dict[str, Workflow]:
    """The workflows of ``settings`` (see ``collab.config``), over its SLM and LLM."""
    from collab.config import load_settings
    from collab.models.defaults import make_llm, make_slm

    settings = settings or load_settings()
    policy, tools = policy_of(settings), tools_of(settings)
    threads = checkpointer_for(settings)
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
    runnable: Any = {"slm": slm, "llm": llm}.get(entry.kind)
    if entry.kind == "pair":
        runnable = CollabChatModel(slm=slm, llm=llm, policy=policy)
    elif entry.kind == "agent":
        runnable = build_graph(
            slm, llm, tools=tools, policy=policy, tool_choice=entry.tool_choice,
            checkpointer=threads,
        )  # fmt: skip
    price = getattr(llm, "price", None) or Price()
    return workflow(entry, runnable, slm, llm, price, queue)
