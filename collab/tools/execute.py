"""Run tool calls: each with a timeout, each failure a ``ToolMessage`` with status error.

A failing tool never crashes the agent: the model reads the error and goes on.
Arguments are validated again here, so a call that does not fit its schema is
never executed. A sync tool that overruns its timeout cannot be killed (Python
threads cannot be); it is left to finish in a daemon thread and its result dropped.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import ToolMessage
from langchain_core.messages.tool import ToolCall
from langchain_core.tools import BaseTool
from langgraph.errors import GraphBubbleUp

from collab.tools.spec import options_of, validate_args


def _error(call: ToolCall, text: str) -> ToolMessage:
    return ToolMessage(
        content=f"Error: {text}", tool_call_id=call["id"] or "", name=call["name"], status="error"
    )


def _result(call: ToolCall, value: Any) -> ToolMessage:
    if isinstance(value, ToolMessage):
        return value
    content = value if isinstance(value, str) else json.dumps(value, default=str)
    return ToolMessage(content=content, tool_call_id=call["id"] or "", name=call["name"])


def _lookup(call: ToolCall, tools: dict[str, BaseTool]) -> BaseTool | ToolMessage:
    tool = tools.get(call["name"])
    if tool is None:
        return _error(call, f"no tool named {call['name']!r}; tools: {', '.join(sorted(tools))}")
    problem = validate_args(tool, call["args"])
    if problem:
        return _error(call, f"invalid arguments for {tool.name}: {problem}")
    return tool


def run_tool_call(call: ToolCall, tools: dict[str, BaseTool]) -> ToolMessage:
    """Run one call in a worker thread, waiting at most the tool's ``timeout_s``."""
    found = _lookup(call, tools)
    if isinstance(found, ToolMessage):
        return found
    tool, timeout = found, options_of(found).timeout_s
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            if getattr(tool, "func", None) is None and getattr(tool, "coroutine", None):
                outcome["value"] = asyncio.run(tool.ainvoke(call["args"]))  # async-only tool
            else:
                outcome["value"] = tool.invoke(call["args"])
        except BaseException as exc:  # reported to the caller below
            outcome["error"] = exc

    # The copied context keeps LangGraph's config visible to the tool (interrupt, writer).
    ctx = contextvars.copy_context()
    worker = threading.Thread(target=ctx.run, args=(work,), daemon=True, name=f"tool-{tool.name}")
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        return _error(call, f"{tool.name} did not finish within {timeout:g} s")
    if "error" in outcome:
        exc = outcome["error"]
        if isinstance(exc, GraphBubbleUp):
            raise exc
        return _error(call, f"{tool.name} failed: {type(exc).__name__}: {exc}")
    return _result(call, outcome.get("value"))


async def arun_tool_call(call: ToolCall, tools: dict[str, BaseTool]) -> ToolMessage:
    found = _lookup(call, tools)
    if isinstance(found, ToolMessage):
        return found
    tool, timeout = found, options_of(found).timeout_s
    try:
        value = await asyncio.wait_for(tool.ainvoke(call["args"]), timeout)
    except TimeoutError:
        return _error(call, f"{tool.name} did not finish within {timeout:g} s")
    except GraphBubbleUp:
        raise
    except Exception as exc:
        return _error(call, f"{tool.name} failed: {type(exc).__name__}: {exc}")
    return _result(call, value)


def run_tool_calls(calls: Sequence[ToolCall], tools: Sequence[BaseTool]) -> list[ToolMessage]:
    """Every call's result, in the calls' order."""
    by_name = {t.name: t for t in tools}
    return [run_tool_call(c, by_name) for c in calls]


async def arun_tool_calls(
    calls: Sequence[ToolCall], tools: Sequence[BaseTool]
) -> list[ToolMessage]:
    """Every call's result, in the calls' order; the calls run concurrently."""
    by_name = {t.name: t for t in tools}
    return list(await asyncio.gather(*(arun_tool_call(c, by_name) for c in calls)))
