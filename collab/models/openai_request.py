"""Chat requests to an OpenAI-compatible server: planning the body, and reading the stream.

``plan_request`` turns LangChain messages and call options into a request body
in the server's dialect (``ServerCapabilities``): servers that parse no tool
calls are taught the format in the prompt and held to it by a JSON schema.
``StreamAssembler`` turns the server's stream events into LangChain chunks,
usage and the trace; a stream that ends without saying why is an error, not
an empty answer.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGenerationChunk

from collab.errors import ModelUnavailableError
from collab.messages import chat_dicts, to_openai_messages, with_system_hint_dicts
from collab.models.engine import TOP_N
from collab.models.server_probe import ServerCapabilities
from collab.models.tool_format import (
    TOOL_CALL_MIN_TOKENS,
    bounded,
    check_tools,
    chosen_tool_names,
    opens_call,
    schema_of,
    schema_prompt,
    split_tool_call_text,
    tool_call_schema,
)
from collab.trace import TRACE_KEY, ModelCall, Price, Stopwatch, Trace

SDK_CHAT_PARAMS = frozenset(
    {
        "model", "messages", "temperature", "top_p", "max_tokens", "seed", "stop", "tools",
        "tool_choice", "response_format", "logprobs", "top_logprobs", "n", "presence_penalty",
        "frequency_penalty", "logit_bias", "user", "parallel_tool_calls", "extra_headers",
        "extra_query", "timeout",
    }
)  # fmt: skip
# collab's own options, read here and never sent
_OWN = ("tools", "tool_choice", "tool_call_threshold", "score_tool_calls", "request_tags", "task")


@dataclass
class Plan:
    body: dict[str, Any]
    tools: list[dict[str, Any]]
    threshold: float
    prompted: bool = False  # tool calls come back as text, parsed here
    forced: bool = False  # the reply is constrained to one tool call
    probe: bool = False  # ask first whether a call is likely


def plan_request(
    caps: ServerCapabilities,
    messages: list[BaseMessage],
    defaults: Mapping[str, Any],
    options: Mapping[str, Any],
) -> Plan:
    """How to ask the server: the request body, and how tool calls come back.

    ``defaults``: the model's own settings (model, temperature, top_p, max_tokens,
    seed, stop, tool_call_threshold); ``options``: this call's (checked already).
    """
    tools: list[dict[str, Any]] = check_tools(options.get("tools") or [])
    names = chosen_tool_names(tools, options.get("tool_choice")) if tools else []
    threshold = float(options.get("tool_call_threshold", defaults["tool_call_threshold"]))
    body: dict[str, Any] = {}
    for name in ("model", "temperature", "top_p", "max_tokens", "seed", "stop"):
        value = options.get(name, defaults.get(name))
        if value is not None:
            body[name] = value
    body.update({k: v for k, v in options.items() if k not in _OWN and k not in body})
    plan = Plan(body=body, tools=tools, threshold=threshold)
    if tools and names != [] and not caps.native_tools:
        # The server parses no tool calls: teach the format in the prompt, and
        # constrain the reply to a call when one is required (or likely).
        plan.prompted = True
        body["messages"] = chat_dicts(messages, tools, native_tools=False)
        if names:
            force_call(plan, caps, names)
        else:
            plan.probe = caps.call_probe
    else:
        body["messages"] = to_openai_messages(messages)
        if tools and names != []:
            body["tools"] = tools
            if names is not None:
                body["tool_choice"] = (
                    "required"
                    if len(names) > 1
                    else {"type": "function", "function": {"name": names[0]}}
                )
    _speak_dialect(plan, caps)
    return plan


def _speak_dialect(plan: Plan, caps: ServerCapabilities) -> None:
    body = plan.body
    schema = schema_of(body.get("response_format"))
    if schema is not None and caps.json_schema_format == "llama-cpp-python":
        # A weaker server: bound the schema, show it to the model, leave room to
        # finish; and speak its dialect (json_object with a schema).
        body["response_format"] = {"type": "json_object", "schema": bounded(schema)}
        if not plan.forced:
            body["messages"] = with_system_hint_dicts(body["messages"], schema_prompt(schema))
        body["max_tokens"] = max(body.get("max_tokens") or 0, TOOL_CALL_MIN_TOKENS)
    extra = {**caps.neutral_sampling, **body.pop("extra_body", {})}
    for key in [k for k in body if k not in SDK_CHAT_PARAMS]:
        extra[key] = body.pop(key)  # top_k: server-specific, sent as-is
    if extra:
        body["extra_body"] = extra


def force_call(plan: Plan, caps: ServerCapabilities, names: list[str] | None) -> None:
    """Hold the reply to one call to one of ``names`` (all tools if None)."""
    names = names or [t["function"]["name"] for t in plan.tools]
    plan.forced, plan.probe = True, False
    schema = tool_call_schema(plan.tools, names)
    if caps.json_schema_format == "llama-cpp-python":
        plan.body["response_format"] = {"type": "json_object", "schema": schema}
    else:
        plan.body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "tool_call", "schema": schema},
        }
    # A call cut short is no call: give it room to close its JSON.
    plan.body["max_tokens"] = max(plan.body.get("max_tokens") or 0, TOOL_CALL_MIN_TOKENS)


def probe_body(plan: Plan) -> dict[str, Any]:
    """One token with its top log-probabilities: is a tool call likely?"""
    keep = {k: v for k, v in plan.body.items() if k in ("model", "messages", "extra_body")}
    return {**keep, "max_tokens": 1, "temperature": 0.0, "logprobs": True, "top_logprobs": TOP_N}


def call_probability(response: Any) -> float | None:
    """P(a call opens) from a ``probe_body`` reply; None when it carries no log-probabilities."""
    choice = response.choices[0] if response.choices else None
    content = choice.logprobs.content if choice is not None and choice.logprobs else None
    if not content:
        return None
    return sum(
        math.exp(t.logprob)
        for t in content[0].top_logprobs
        # a code fence opens code more often than a call: not counted
        if opens_call(t.token) is not False and t.token.strip("` \n")
    )


class StreamAssembler:
    """Turns OpenAI stream events into LangChain chunks, with usage and the trace."""

    def __init__(self, model: str, price: Price, plan: Plan) -> None:
        self.model, self.price = model, price
        self.prompted = plan.prompted
        self.forced = plan.forced
        self.watch = Stopwatch()
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.content_events = 0
        self.held = ""  # prompted mode: text that may still turn into a tool call
        self.deciding = plan.prompted

    def _chunk(self, message: AIMessageChunk) -> ChatGenerationChunk:
        self.watch.mark_first()
        return ChatGenerationChunk(message=message)

    def feed(self, event: dict[str, Any]) -> Iterator[ChatGenerationChunk]:
        if event.get("usage"):
            self.usage = event["usage"]
        for choice in event.get("choices") or []:
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
            delta = choice.get("delta") or {}
            text = delta.get("content") or ""
            if text:
                self.content_events += 1
                if self.deciding or self.forced:
                    self.held += text
                    if self.forced or opens_call(self.held) is not False:
                        continue  # a call (or not yet known): keep it until the end
                    self.deciding = False
                    text, self.held = self.held, ""
                yield self._chunk(AIMessageChunk(content=text))
            for call in delta.get("tool_calls") or []:
                fn = call.get("function") or {}
                yield self._chunk(
                    AIMessageChunk(
                        content="",
                        tool_call_chunks=[
                            tool_call_chunk(
                                name=fn.get("name"),
                                args=fn.get("arguments"),
                                id=call.get("id"),
                                index=call.get("index", 0),
                            )
                        ],
                    )
                )

    def finish(self, estimated_prompt_tokens: int) -> Iterator[ChatGenerationChunk]:
        if self.finish_reason is None:
            raise ModelUnavailableError(
                f"the stream from {self.model} ended before the answer was finished",
                hint="the server closed the stream early (it may have died, or refused a "
                "prompt over its context); check its log",
            )
        if self.held:
            call = None
            if self.forced or opens_call(self.held):
                call = split_tool_call_text(self.held)
            if call is None:
                yield self._chunk(AIMessageChunk(content=self.held))
            else:
                self.finish_reason = "tool_calls"
                yield self._chunk(
                    AIMessageChunk(
                        content="",
                        tool_call_chunks=[
                            tool_call_chunk(
                                name=call["name"],
                                args=json.dumps(call["args"], ensure_ascii=False),
                                id=call["id"],
                                index=0,
                            )
                        ],
                    )
                )
        self.watch.stop()
        if self.usage:
            prompt_tokens = int(self.usage.get("prompt_tokens") or 0)
            output_tokens = int(self.usage.get("completion_tokens") or 0)
        else:
            prompt_tokens, output_tokens = estimated_prompt_tokens, self.content_events
        call_record = ModelCall(
            model=self.model,
            location="remote",
            input_tokens=prompt_tokens,
            output_tokens=output_tokens,
            latency_s=self.watch.elapsed,
            time_to_first_token_s=self.watch.ttft,
            cost_usd=self.price.cost(prompt_tokens, output_tokens),
        )
        trace = Trace(calls=[call_record])
        metadata: dict[str, Any] = {
            "model_name": self.model,
            "finish_reason": self.finish_reason or "stop",
            TRACE_KEY: trace.to_metadata(),
        }
        if not self.usage:
            metadata["usage_estimated"] = True
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=trace.usage_metadata(),
                response_metadata=metadata,
                chunk_position="last",
            ),
            generation_info={"finish_reason": metadata["finish_reason"]},
        )
