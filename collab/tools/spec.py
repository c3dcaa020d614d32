"""Tools from typed functions, pydantic models or LangChain tools, schema'd through pydantic.

Every tool becomes a LangChain ``BaseTool`` carrying collab's options (approval,
LLM verification, timeout) in its metadata. A tool whose signature cannot be
turned into a JSON schema is refused here, when it is defined, not when a model
first tries to call it.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Sequence
from typing import Any

from jsonschema import Draft202012Validator
from langchain_core.tools import BaseTool, StructuredTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, Field, ValidationError

from collab.errors import ConfigurationError
from collab.models.tool_format import to_openai_tools

OPTIONS_KEY = "collab"


class ToolOptions(BaseModel):
    """How collab treats calls to one tool."""

    requires_approval: bool = Field(
        False, description="pause the graph (LangGraph interrupt) until a person approves"
    )
    verify: bool = Field(False, description="the LLM checks each call before it runs")
    timeout_s: float = Field(30.0, gt=0, description="a call running longer is an error")


ToolSource = Callable[..., Any] | type[BaseModel] | BaseTool | dict[str, Any]


def make_tool(
    obj: ToolSource,
    *,
    name: str | None = None,
    description: str | None = None,
    requires_approval: bool = False,
    verify: bool = False,
    timeout_s: float = 30.0,
) -> BaseTool:
    """``obj`` as a tool collab can offer to models and run.

    A function needs a type annotation on every parameter and a docstring (or
    ``description``); a pydantic model is a tool whose result is the validated
    arguments; a LangChain tool is kept as it is. An OpenAI tool dict describes
    a tool that models can call but nothing can run (calling it is an error):
    for planning and benchmarks.
    """
    options = ToolOptions(requires_approval=requires_approval, verify=verify, timeout_s=timeout_s)
    if isinstance(obj, BaseTool):
        made = obj
    elif isinstance(obj, dict):
        made = _described_tool(obj)
    elif isinstance(obj, type) and issubclass(obj, BaseModel):
        made = _model_tool(obj, name, description)
    elif callable(obj):
        made = _function_tool(obj, name, description)
    else:
        raise ConfigurationError(
            f"cannot make a tool of {obj!r}: it is not callable",
            hint="give a typed function, a pydantic model class, a LangChain tool or an "
            "OpenAI tool dict",
        )
    _check_schema(made)
    made.metadata = {**(made.metadata or {}), OPTIONS_KEY: options.model_dump()}
    return made


def make_tools(objs: Sequence[ToolSource]) -> list[BaseTool]:
    """Each of ``objs`` as a tool (tools already made keep their options); names must differ."""
    tools = [o if isinstance(o, BaseTool) and _has_options(o) else make_tool(o) for o in objs]
    names = [t.name for t in tools]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigurationError(
            f"two tools share the name {', '.join(repeated)}",
            hint="give each tool a distinct name (make_tool(fn, name=...))",
        )
    return tools


def options_of(tool: BaseTool) -> ToolOptions:
    return ToolOptions.model_validate((tool.metadata or {}).get(OPTIONS_KEY, {}))


def parameters(tool: BaseTool) -> dict[str, Any]:
    """The JSON schema of ``tool``'s arguments, as a model is shown it."""
    return dict(to_openai_tools([tool])[0]["function"].get("parameters", {}))


def validate_args(tool: BaseTool, args: dict[str, Any]) -> str | None:
    """None when ``args`` fit ``tool``'s schema, else what is wrong, in words a model can use."""
    schema = tool.tool_call_schema
    if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        spec = parameters(tool)
        errors = sorted(Draft202012Validator(spec).iter_errors(args), key=lambda e: list(e.path))
        found = [f"{'.'.join(map(str, e.path)) or 'arguments'}: {e.message}" for e in errors]
        return "; ".join(found) or None
    try:
        schema.model_validate(args)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors()
        ]
        return "; ".join(problems)
    unknown = sorted(set(args) - set(schema.model_fields))
    return f"unknown arguments: {', '.join(unknown)}" if unknown else None


def _has_options(tool: BaseTool) -> bool:
    return OPTIONS_KEY in (tool.metadata or {})


def _function_tool(fn: Callable[..., Any], name: str | None, description: str | None) -> BaseTool:
    label = name or getattr(fn, "__name__", repr(fn))
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"tool {label!r}: its signature cannot be read: {exc}") from exc
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ConfigurationError(
                f"tool {label!r}: *{param.name} cannot be described to a model",
                hint="name every argument the tool takes",
            )
        if param.annotation is inspect.Parameter.empty:
            raise ConfigurationError(
                f"tool {label!r}: parameter {param.name!r} has no type annotation",
                hint=f"annotate it, e.g. {param.name}: str, so the model knows what to pass",
            )
    if not (description or inspect.getdoc(fn)):
        raise ConfigurationError(
            f"tool {label!r} has no docstring",
            hint="say in a docstring what the tool does; the model reads it to choose tools",
        )
    is_async = inspect.iscoroutinefunction(fn)
    try:
        return StructuredTool.from_function(
            func=None if is_async else fn,
            coroutine=fn if is_async else None,
            name=name,
            description=description,
            parse_docstring=False,
        )
    except Exception as exc:
        raise ConfigurationError(
            f"tool {label!r}: its signature cannot be schema'd: {_first_line(exc)}",
            hint="use JSON-friendly types (str, int, float, bool, lists, dicts, pydantic models)",
        ) from exc


def _described_tool(spec: dict[str, Any]) -> BaseTool:
    fn = to_openai_tools([spec])[0]["function"]  # checks the dict's shape
    name = fn["name"]

    def unrunnable(**_: Any) -> str:
        raise NotImplementedError(f"tool {name!r} was given as a description only")

    schema = fn.get("parameters") or {"type": "object", "properties": {}}
    return StructuredTool(
        name=name, description=fn.get("description", ""), args_schema=schema, func=unrunnable
    )


def _model_tool(model: type[BaseModel], name: str | None, description: str | None) -> BaseTool:
    def record(**kwargs: Any) -> str:
        return model.model_validate(kwargs).model_dump_json()

    return StructuredTool.from_function(
        func=record,
        name=name or model.__name__,
        description=description or inspect.getdoc(model) or f"Record a {model.__name__}.",
        args_schema=model,
    )


def _check_schema(tool: BaseTool) -> None:
    """Building the JSON schema now surfaces types pydantic cannot describe."""
    try:
        spec = convert_to_openai_tool(tool)
        json.dumps(spec)
    except Exception as exc:
        raise ConfigurationError(
            f"tool {tool.name!r}: its arguments cannot be schema'd: {_first_line(exc)}",
            hint="use JSON-friendly types (str, int, float, bool, lists, dicts, pydantic models)",
        ) from exc


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
