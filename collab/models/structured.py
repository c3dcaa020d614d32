"""``with_structured_output`` for every backend: the schema travels as ``response_format``."""

from __future__ import annotations

from operator import itemgetter
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.output_parsers import JsonOutputParser, PydanticOutputParser
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.utils.function_calling import convert_to_json_schema
from langchain_core.utils.pydantic import is_basemodel_subclass

from collab.errors import ConfigurationError


def structured_output(
    model: BaseChatModel,
    schema: dict[str, Any] | type | None,
    *,
    method: Literal["json_schema", "function_calling", "json_mode"],
    include_raw: bool,
    **kwargs: Any,
) -> Runnable[LanguageModelInput, Any]:
    """A runnable that returns ``schema``-shaped output (a pydantic object or a dict).

    ``json_schema`` constrains decoding to the schema (locally a grammar, remotely the
    server's ``response_format``); ``json_mode`` to any JSON object, or to the schema
    when one is given; ``function_calling`` forces a tool call.
    """
    if kwargs.pop("strict", None) is not None:
        pass  # decoding is always constrained; strictness is the default
    if kwargs:
        raise ConfigurationError(
            f"unexpected arguments to with_structured_output: {sorted(kwargs)}",
            hint="use schema, method and include_raw",
        )
    if method == "function_calling":
        if schema is None:
            raise ConfigurationError("method='function_calling' needs a schema")
        return BaseChatModel.with_structured_output(model, schema, include_raw=include_raw)
    llm = model.bind(
        response_format=_response_format(schema, method),
        ls_structured_output_format={"kwargs": {"method": method}, "schema": schema},
    )
    parser: Runnable[Any, Any] = (
        PydanticOutputParser(pydantic_object=schema)
        if isinstance(schema, type) and is_basemodel_subclass(schema)
        else JsonOutputParser()
    )
    if not include_raw:
        return llm | parser
    parsed = RunnablePassthrough.assign(
        parsed=itemgetter("raw") | parser, parsing_error=lambda _: None
    )
    none = RunnablePassthrough.assign(parsed=lambda _: None)
    return RunnableMap(raw=llm) | parsed.with_fallbacks([none], exception_key="parsing_error")


def _response_format(schema: dict[str, Any] | type | None, method: str) -> dict[str, Any]:
    """OpenAI's ``response_format`` for ``schema``; json_mode with a schema keeps to it."""
    if method == "json_mode" and schema is None:
        return {"type": "json_object"}
    if method not in ("json_schema", "json_mode"):
        raise ConfigurationError(
            f"unknown structured output method {method!r}",
            hint="use 'json_schema', 'json_mode' or 'function_calling'",
        )
    if schema is None:
        raise ConfigurationError(f"method={method!r} needs a schema")
    try:
        json_schema = convert_to_json_schema(schema)
    except Exception as exc:
        raise ConfigurationError(
            f"cannot turn {schema!r} into a JSON schema: {exc}",
            hint="pass a pydantic model, a TypedDict or a JSON schema dict",
        ) from exc
    return {
        "type": "json_schema",
        "json_schema": {
            "name": json_schema.get("title", "output"),
            "schema": json_schema,
            "strict": True,
        },
    }
