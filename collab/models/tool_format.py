"""How tool calls and structured output are written: tool specs, call schemas, call text."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any, Literal

from jsonschema import Draft202012Validator, SchemaError
from langchain_core.messages.tool import ToolCall, tool_call
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel

from collab.errors import ConfigurationError, ModelOutputError
from collab.messages import TOOL_CLOSE, TOOL_OPEN

CALL_START = '{"'
# What a model may write before a call's JSON; ``opens_call`` reads a call after each.
CALL_OPENINGS = (TOOL_OPEN + "\n", "", "```json\n")

ToolLike = dict[str, Any] | type[BaseModel] | BaseTool | Any
ToolChoice = Literal["auto", "any", "none", "required"] | str | dict[str, Any] | bool | None


def to_openai_tools(tools: Sequence[ToolLike]) -> list[dict[str, Any]]:
    """Tools as OpenAI function specs; a schema that cannot be converted is refused here."""
    specs = []
    for t in tools:
        try:
            spec = convert_to_openai_tool(t)
        except Exception as exc:
            raise ConfigurationError(
                f"cannot turn tool {t!r} into a JSON schema: {exc}",
                hint="give a typed function with a docstring, a pydantic model, a LangChain "
                "tool, or an OpenAI tool dict",
            ) from exc
        specs.append(spec)
    return check_tools(specs)


def check_tools(specs: Sequence[Any]) -> list[dict[str, Any]]:
    """``specs`` if each is a usable OpenAI tool spec; else a ConfigurationError naming the
    tool and what is wrong (bad types, properties that are not schemas, dangling $refs)."""
    for spec in specs:
        _check_tool_spec(spec if isinstance(spec, dict) else {"function": None})
    return list(specs)


def _check_tool_spec(spec: dict[str, Any]) -> None:
    fn = spec.get("function")
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise ConfigurationError(
            f"tool spec {spec!r} has no function name",
            hint="an OpenAI tool dict looks like "
            '{"type": "function", "function": {"name": ..., "parameters": {...}}}',
        )
    params = fn.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(params, dict) or params.get("type", "object") != "object":
        raise ConfigurationError(
            f"tool {fn['name']!r}: parameters must be a JSON schema of type object, got {params!r}",
            hint="describe the arguments as an object schema with named properties",
        )
    props = params.get("properties", {})
    if not isinstance(props, dict) or not all(isinstance(v, dict) for v in props.values()):
        raise ConfigurationError(
            f"tool {fn['name']!r}: 'properties' must map names to JSON schemas",
            hint="for example {'city': {'type': 'string'}}",
        )
    try:
        Draft202012Validator.check_schema(params)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "parameters"
        raise ConfigurationError(
            f"tool {fn['name']!r}: {where} is not a valid JSON schema: {exc.message}",
            hint="types are string, number, integer, boolean, array, object or null",
        ) from exc
    for ref in _refs(params):
        if not _resolves(params, ref):
            raise ConfigurationError(
                f"tool {fn['name']!r}: $ref {ref!r} points at nothing in the schema",
                hint="define it under $defs, or inline the schema",
            )


def _refs(schema: Any) -> list[str]:
    if isinstance(schema, dict):
        own = [schema["$ref"]] if isinstance(schema.get("$ref"), str) else []
        return own + [r for v in schema.values() for r in _refs(v)]
    if isinstance(schema, list):
        return [r for v in schema for r in _refs(v)]
    return []


def _resolves(schema: dict[str, Any], ref: str) -> bool:
    """Whether a local ``#/...`` reference names a part of ``schema``."""
    if not ref.startswith("#"):
        return False
    node: Any = schema
    for part in filter(None, ref[1:].split("/")):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def chosen_tool_names(tools: list[dict[str, Any]], choice: ToolChoice) -> list[str] | None:
    """Names the model must call one of; None when it may also answer in text.

    Accepts what LangChain and OpenAI callers pass: "auto", "none" (an empty
    list: no tool may be called), "any"/"required"/True, a tool name, or
    {"type": "function", "function": {"name": ...}}.
    """
    names = [t["function"]["name"] for t in tools]
    if choice in (None, "auto", False):
        return None
    if choice == "none":
        return []
    if choice in ("any", "required", True):
        return names
    if isinstance(choice, dict):
        choice = choice.get("function", {}).get("name") or choice.get("name")
    if isinstance(choice, str) and choice in names:
        return [choice]
    raise ConfigurationError(
        f"tool_choice {choice!r} names no bound tool (bound: {', '.join(names) or 'none'})",
        hint='use "auto", "any", "none" or the name of a bound tool',
    )


# Small models can loop inside a string forever; bounded strings keep every
# constrained call short enough to finish within its token budget.
MAX_STRING_CHARS = 160
# ... and a forced call gets at least this many tokens, whatever max_tokens says.
TOOL_CALL_MIN_TOKENS = 512


SMALL_INT_RANGE = 256
# ... and arrays hold at most this many items unless the schema says (maxItems).
MAX_ARRAY_ITEMS = 16


def bounded(schema: Any) -> Any:
    """``schema`` made safe to decode under a grammar.

    Strings get a ``maxLength`` and arrays a ``maxItems``; small integer ranges
    become enums, since grammar converters ignore ``minimum``/``maximum`` but
    honour ``enum``.
    """
    if isinstance(schema, list):
        return [bounded(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: bounded(v) for k, v in schema.items()}
    if out.get("type") == "string" and "maxLength" not in out and "enum" not in out:
        out["maxLength"] = MAX_STRING_CHARS
    if out.get("type") == "array" and "maxItems" not in out:
        out["maxItems"] = max(MAX_ARRAY_ITEMS, int(out.get("minItems", 0)))
    low, high = out.get("minimum"), out.get("maximum")
    if isinstance(out.get("exclusiveMinimum"), int):
        low = out["exclusiveMinimum"] + 1
    if isinstance(out.get("exclusiveMaximum"), int):
        high = out["exclusiveMaximum"] - 1
    if out.get("type") == "integer" and isinstance(low, int) and isinstance(high, int):
        span = high - low
        if 0 <= span < SMALL_INT_RANGE:
            out["enum"] = list(range(low, high + 1))
    return out


_SCALAR: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "maxLength": MAX_STRING_CHARS},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "null"},
    ]
}
# JSON mode: any object, two levels deep, so that decoding always ends.
JSON_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {
        "anyOf": [
            *_SCALAR["anyOf"],
            {"type": "array", "items": _SCALAR, "maxItems": 32},
            {"type": "object", "additionalProperties": _SCALAR},
        ]
    },
}


def tool_call_schema(tools: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """JSON schema of one call ``{"name": ..., "arguments": {...}}`` to any of ``names``."""
    options = []
    for t in tools:
        fn = t["function"]
        if fn["name"] not in names:
            continue
        params = bounded(fn.get("parameters") or {"type": "object", "properties": {}})
        options.append(
            {
                "type": "object",
                "properties": {"name": {"const": fn["name"]}, "arguments": params},
                "required": ["name", "arguments"],
            }
        )
    return options[0] if len(options) == 1 else {"anyOf": options}


def new_tool_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def parse_tool_call(text: str) -> ToolCall:
    """A ToolCall from ``{"name": ..., "arguments": {...}}`` text."""
    # strict=False: some servers' grammars let raw control characters into strings
    data = json.loads(text, strict=False)
    args = data.get("arguments", data.get("parameters", {}))
    if isinstance(args, str):
        args = json.loads(args, strict=False)
    return tool_call(name=str(data["name"]), args=dict(args), id=new_tool_call_id())


_FENCE = "```json"


def opens_call(text: str) -> bool | None:
    """Whether a reply that starts with ``text`` is a tool call; None while undecided.

    Calls open with ``<tool_call>``, or with ``{"`` bare or in a ```json fence
    (what instruction-tuned coders write when they mean a call).
    """
    probe = text.lstrip()
    if probe.startswith(TOOL_OPEN):
        return True
    if TOOL_OPEN.startswith(probe) or _FENCE.startswith(probe):
        return None
    if probe.startswith(_FENCE):
        probe = probe.removeprefix(_FENCE)
    compact = "".join(probe.split())
    if compact.startswith(CALL_START):
        return True
    return None if CALL_START.startswith(compact) else False


def split_tool_call_text(text: str) -> ToolCall | None:
    """The call in a ``{"name": ..., "arguments": ...}`` reply (tags optional), else None."""
    body = text.strip()
    if body.startswith(_FENCE):
        body = body.removeprefix(_FENCE).split("```", 1)[0].strip()
    if body.startswith(TOOL_OPEN):
        body = body.removeprefix(TOOL_OPEN).split(TOOL_CLOSE, 1)[0].strip()
    if not body.startswith("{"):
        return None
    try:
        return parse_tool_call(body)
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelOutputError(
            f"the model opened a tool call that does not parse: {body[:200]!r}",
            hint="force the call with tool_choice='any' so decoding is constrained",
        ) from exc


def schema_prompt(schema: dict[str, Any]) -> str:
    """Instructions that tell a model the shape its (constrained) reply will take."""
    return (
        "Reply with a JSON object that matches this JSON schema, filled in for the "
        f"request:\n{json.dumps(schema, ensure_ascii=False)}"
    )


def schema_of(response_format: Any) -> dict[str, Any] | None:
    """The JSON schema an OpenAI-style ``response_format`` asks for; None for plain text.

    ``{"type": "json_object"}`` asks for any object (``JSON_OBJECT_SCHEMA``). A
    format that is none of OpenAI's shapes is the caller's mistake.
    """
    if response_format is None:
        return None
    if isinstance(response_format, dict):
        kind = response_format.get("type")
        if kind == "json_object":
            schema = response_format.get("schema")
            return schema if isinstance(schema, dict) else JSON_OBJECT_SCHEMA
        if kind == "json_schema":
            inner = response_format.get("json_schema", {})
            schema = inner.get("schema", inner) if isinstance(inner, dict) else None
            return schema if isinstance(schema, dict) else JSON_OBJECT_SCHEMA
        if kind == "text":
            return None
        if kind is None or kind in ("object", "array", "string", "number", "integer", "boolean"):
            return response_format  # a bare JSON schema
    raise ConfigurationError(
        f"unsupported response_format {response_format!r}",
        hint='pass {"type": "json_schema", "json_schema": {"schema": ...}}, '
        '{"type": "json_object"} or a JSON schema dict',
    )
