"""Tools: definition, selection, SLM function calling with repair and escalation, execution."""

from collab.tools.calling import ToolCaller, ToolPlan
from collab.tools.execute import arun_tool_calls, run_tool_calls
from collab.tools.select import select_tools
from collab.tools.spec import ToolOptions, make_tool, make_tools, options_of, validate_args

__all__ = [
    "ToolCaller",
    "ToolOptions",
    "ToolPlan",
    "arun_tool_calls",
    "make_tool",
    "make_tools",
    "options_of",
    "run_tool_calls",
    "select_tools",
    "validate_args",
]
