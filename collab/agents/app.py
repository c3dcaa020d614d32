"""The graph ``langgraph dev`` serves (see langgraph.json), from the user's config file.

The SLM, the LLM endpoints, the policy and the tools come from ``collab.config``
(``$COLLAB_CONFIG``, ``./collab.toml``) as for ``collab serve``; without a config,
the demo's. LangGraph's server keeps the threads, so the graph has no checkpointer.
"""

from __future__ import annotations

from typing import Any

from collab.agents.configured import policy_of, tools_of
from collab.agents.graph import build_graph
from collab.config import load_settings
from collab.models.defaults import make_llm, make_slm


def make_graph() -> Any:
    """A fresh graph over the configured models (LangGraph calls this once per server)."""
    settings = load_settings()
    policy, tools = policy_of(settings), tools_of(settings)
    return build_graph(make_slm(settings), make_llm(settings), tools=tools, policy=policy)
