"""Agents: the LangGraph graph that splits an agent's work between the SLM and the LLM."""

from collab.agents.graph import AgentState, build_graph

__all__ = ["AgentState", "build_graph"]
