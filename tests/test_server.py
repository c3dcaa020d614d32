"""``collab serve`` over real HTTP: the openai SDK, LangChain's ChatOpenAI, a browser, bad input.

The server runs in-process on 127.0.0.1 with the real SmolLM2 as the SLM and
the real llama-cpp-python server (SmolLM2 again) as the LLM.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from langchain_core.messages import AIMessage
from langchain_openai import ChatOpenAI

from collab.agents import build_graph
from collab.chat_model import CollabChatModel
from collab.models.llamacpp import LlamaCppChatModel
from collab.models.openai import OpenAICompatibleChatModel
from collab.policy import Match, Policy, Rule
from collab.server import BackgroundServer, Limits, create_app, workflows_for
from collab.trace import Price
from tests.servers import SMOL

KEY = "test-key-1234"
ROOT = Path(__file__).resolve().parents[1]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def make_app(slm: LlamaCppChatModel, remote: OpenAICompatibleChatModel, limits: Limits) -> Any:
    remote = remote.model_copy(update={"price": Price(input_per_mtok=0.5, output_per_mtok=1.5)})
    policy = Policy(
        default="slm_only",
        rules=[Rule(name="code to the LLM", when=Match(task=["code"]), strategy="llm_only")],
    )
    workflows = workflows_for(
        slm,
        remote,
        pair=CollabChatModel(slm=slm, llm=remote, policy=policy),
        agent=build_graph(slm, remote, tools=[add], policy=policy),
        max_queue=limits.max_queue,
    )
    return create_app(workflows, api_key=KEY, limits=limits)


@pytest.fixture(scope="module")
def served(slm: LlamaCppChatModel, remote: OpenAICompatibleChatModel) -> Iterator[BackgroundServer]:
    limits = Limits(max_tokens=64, default_max_tokens=12, max_body_bytes=50_000)
    server = BackgroundServer(make_app(slm, remote, limits))
    yield server
    server.stop()


@pytest.fixture()
def client(served: BackgroundServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{served.url}/v1", api_key=KEY, max_retries=0)


def collab_of(obj: Any) -> dict[str, Any]:
    return obj.model_extra["collab"]  # type: ignore[no-any-return]


def test_models_and_a_plain_completion(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == ["collab-auto", "collab-slm", "collab-llm", "collab-agent"]
    done = client.chat.completions.create(
        model="collab-slm", messages=[{"role": "user", "content": "Name a colour."}], max_tokens=8
    )
    assert done.choices[0].message.content
    assert 0 < done.usage.completion_tokens <= 8
    collab = collab_of(done)
    assert collab["answered_by"] == {"model": SMOL, "location": "local"}
    assert collab["remote_tokens"] == 0 and collab["saved_usd"] == collab["llm_only_cost_usd"] > 0


def test_the_policy_sends_code_to_the_llm(client: openai.OpenAI) -> None:
    done = client.chat.completions.create(
        model="collab-auto",
        messages=[{"role": "user", "content": "Write a Python function that adds two numbers."}],
    )
    collab = collab_of(done)
    assert collab["strategy"] == "llm_only" and "code to the LLM" in collab["reason"]
    assert collab["answered_by"]["location"] == "remote"
    assert collab["saved_usd"] == pytest.approx(0.0, abs=1e-12)


async def test_async_streaming_matches_the_plain_answer(served: BackgroundServer) -> None:
    client = openai.AsyncOpenAI(base_url=f"{served.url}/v1", api_key=KEY, max_retries=0)
    question = [{"role": "user", "content": "Say hello to Ada."}]
    plain = await client.chat.completions.create(model="collab-auto", messages=question)
    pieces, finals, usages = [], [], []
    stream = await client.chat.completions.create(
        model="collab-auto",
        messages=question,
        stream=True,
        stream_options={"include_usage": True},
    )
    async for part in stream:
        if part.choices and part.choices[0].delta.content:
            pieces.append(part.choices[0].delta.content)
        if part.choices and part.choices[0].finish_reason:
            finals.append(collab_of(part))
        if part.usage:
            usages.append(part.usage)
    assert len(pieces) > 1  # streamed, not sent whole
    assert "".join(pieces) == plain.choices[0].message.content
    assert finals[0]["strategy"] == "slm_only"
    assert usages[0].completion_tokens == plain.usage.completion_tokens


def test_tools_in_and_out_plain_and_streamed(client: openai.OpenAI) -> None:
    asked = [{"role": "user", "content": "What is the weather in Paris?"}]
    done = client.chat.completions.create(
        model="collab-auto", messages=asked, tools=[WEATHER], tool_choice="required"
    )
    assert done.choices[0].finish_reason == "tool_calls"
    call = done.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)

    stream = client.chat.completions.create(
        model="collab-slm", messages=asked, tools=[WEATHER], tool_choice="required", stream=True
    )
    name, args, reason = "", "", None
    for part in stream:
        for delta in part.choices[0].delta.tool_calls or []:
            name += delta.function.name or ""
            args += delta.function.arguments or ""
        reason = part.choices[0].finish_reason or reason
    assert name == "get_weather" and "city" in json.loads(args) and reason == "tool_calls"

    answer = client.chat.completions.create(
        model="collab-slm",
        messages=[
            *asked,
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C."},
        ],
        tools=[WEATHER],
        tool_choice="none",
    )
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert answer.choices[0].message.content


def test_langchain_chat_openai(served: BackgroundServer) -> None:
    chat = ChatOpenAI(
        base_url=f"{served.url}/v1", api_key=KEY, model="collab-slm", max_tokens=8, max_retries=0
    )
    reply = chat.invoke("Name a fruit.")
    assert isinstance(reply, AIMessage) and reply.text
    streamed = "".join(str(c.content) for c in chat.stream("Name a fruit."))
    assert streamed == reply.text
    called = chat.bind_tools([WEATHER], tool_choice="get_weather").invoke("Weather in Oslo?")
    assert called.tool_calls[0]["name"] == "get_weather"


def test_the_agent_workflow_answers_and_refuses_client_tools(
    served: BackgroundServer, client: openai.OpenAI
) -> None:
    done = client.chat.completions.create(
        model="collab-agent", messages=[{"role": "user", "content": "What is 2 plus 3?"}]
    )
    assert done.choices[0].message.content is not None
    assert collab_of(done)["calls"]
    with pytest.raises(openai.BadRequestError, match="runs its own tools"):
        client.chat.completions.create(
            model="collab-agent", messages=[{"role": "user", "content": "hi"}], tools=[WEATHER]
        )


def test_a_thread_or_approval_the_agent_does_not_keep_is_a_400(client: openai.OpenAI) -> None:
    for metadata in ({"thread_id": "t-1", "approve": "yes"}, {"thread_id": "t-1"}):
        with pytest.raises(openai.BadRequestError, match="keeps no threads"):
            client.chat.completions.create(
                model="collab-agent", messages=[{"role": "user", "content": "yes"}],
                metadata=metadata,
            )  # fmt: skip


def test_the_agent_workflow_passes_the_requests_parameters_to_its_models(
    client: openai.OpenAI,
) -> None:
    short = client.chat.completions.create(
        model="collab-agent", max_tokens=8, temperature=0.0,
        messages=[{"role": "user", "content": "Tell me a long story about a dragon."}],
    )  # fmt: skip
    written = [c for c in collab_of(short)["calls"] if c["role"] in ("drafter", "tool_caller")]
    assert written and all(c["output_tokens"] <= 8 for c in written)


def test_the_agent_workflow_streams_the_tokens_of_a_final_answer(
    slm: LlamaCppChatModel, remote: OpenAICompatibleChatModel
) -> None:
    policy = Policy(
        default="slm_only",
        rules=[Rule(name="code to the LLM", when=Match(task=["code"]), strategy="llm_only")],
    )
    pair = CollabChatModel(slm=slm, llm=remote, policy=policy)
    workflows = workflows_for(slm, remote, pair=pair, agent=build_graph(slm, remote, policy=policy))
    server = BackgroundServer(create_app(workflows, limits=Limits(default_max_tokens=12)))
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="-", max_retries=0)
    try:
        for question, strategy in [
            ("Say hello to Ada.", "slm_only"),  # the drafter's answer, nothing reviews it
            ("Write a Python function that adds two numbers.", "llm_only"),  # the reasoner's
        ]:
            asked = [{"role": "user", "content": question}]
            plain = client.chat.completions.create(model="collab-agent", messages=asked)
            pieces, finals = [], []
            for part in client.chat.completions.create(
                model="collab-agent", messages=asked, stream=True
            ):
                if part.choices and part.choices[0].delta.content:
                    pieces.append(part.choices[0].delta.content)
                if part.choices and part.choices[0].finish_reason:
                    finals.append(collab_of(part))
            assert finals[0]["strategy"] == strategy
            assert len(pieces) > 1  # streamed as the node decodes, not sent whole at the end
            assert "".join(pieces) == plain.choices[0].message.content
    finally:
        server.stop()


def test_a_wrong_or_missing_key_gives_401(served: BackgroundServer) -> None:
    wrong = openai.OpenAI(base_url=f"{served.url}/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    bare = httpx.get(f"{served.url}/v1/models")
    assert bare.status_code == 401
    assert bare.json()["error"]["type"] == "authentication_error"
    assert httpx.get(f"{served.url}/health").json()["status"] == "ok"  # no key needed


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ("{not json", 400, "JSON"),
        ({"model": "collab-slm"}, 400, "messages"),
        ({"model": "collab-slm", "messages": []}, 400, "messages"),
        ({"model": "collab-slm", "messages": [{"role": "wizard", "content": "hi"}]}, 400, "role"),
        ({"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}, 404, "collab-slm"),
        (
            {"model": "collab-slm", "messages": [{"role": "user", "content": "hi"}], "n": 2},
            400,
            "n",
        ),
        (
            {"model": "collab-slm", "messages": [{"role": "user", "content": "hi"}],
             "max_tokens": 65},
            400,
            "at most 64",
        ),
        (
            {"model": "collab-slm", "messages": [{"role": "user", "content": "word " * 3000}]},
            400,
            "context",
        ),
        (
            {"model": "collab-slm", "messages": [{"role": "user", "content": "hi"}],
             "tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}},
            400,
            "names no bound tool",
        ),
        *[
            (
                {"model": "collab-slm", "messages": [{"role": "user", "content": "hi"}],
                 "tools": [{"type": "function",
                            "function": {"name": "lookup", "parameters": parameters}}]},
                400,
                words,
            )
            for parameters, words in [
                ({"type": "object", "properties": {"x": {"type": "banana"}}}, "'lookup'"),
                ({"type": "object", "properties": ["x", "y"]}, "'lookup'"),
                ({"type": "object", "properties": {"x": {"$ref": "#/$defs/Nope"}}}, "$ref"),
                ({"type": "string"}, "type object"),
            ]
        ],
        (
            {"model": "collab-slm", "messages": [{"role": "user", "content": "hi"},
                                                  {"role": "tool", "content": "42"}]},
            400,
            "tool_call_id",
        ),
        (
            {"model": "collab-slm", "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                  "function": {"name": "add", "arguments": "{not json"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "3"}]},
            400,
            "messages",
        ),
    ],
)  # fmt: skip
def test_bad_requests_get_openai_style_errors(
    served: BackgroundServer, body: Any, status: int, words: str
) -> None:
    raw = body if isinstance(body, str) else json.dumps(body)
    reply = httpx.post(
        f"{served.url}/v1/chat/completions",
        content=raw,
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
        timeout=60,
    )
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert words in error["message"] and error["type"]


def test_an_oversize_body_gives_413_declared_or_streamed(served: BackgroundServer) -> None:
    big = json.dumps(
        {"model": "collab-slm", "messages": [{"role": "user", "content": "x" * 60_000}]}
    )
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    declared = httpx.post(f"{served.url}/v1/chat/completions", content=big, headers=headers)
    assert declared.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        data = big.encode()
        for i in range(0, len(data), 8192):
            yield data[i : i + 8192]

    streamed = httpx.post(f"{served.url}/v1/chat/completions", content=chunks(), headers=headers)
    assert streamed.status_code == 413
    assert streamed.json()["error"]["code"] == "body_too_large"


async def test_queue_limit_and_a_disconnect_that_cancels(
    slm: LlamaCppChatModel, remote: OpenAICompatibleChatModel
) -> None:
    server = BackgroundServer(make_app(slm, remote, Limits(max_tokens=2000, max_queue=1)))
    headers = {"Authorization": f"Bearer {KEY}"}
    long = {
        "model": "collab-slm",
        "messages": [{"role": "user", "content": "Write a very long story about a lighthouse."}],
        "max_tokens": 2000,
        "stream": True,
    }
    short = {"model": "collab-slm", "messages": [{"role": "user", "content": "Hi"}]}
    try:
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=120) as http:
            health = (await http.get("/health")).json()
            async with http.stream("POST", "/v1/chat/completions", json=long) as first:
                assert first.status_code == 200
                lines = first.aiter_lines()
                while "content" not in (await anext(lines)):
                    pass  # the long answer is being generated
                waiting = asyncio.create_task(http.post("/v1/chat/completions", json=short))
                for _ in range(200):
                    health = (await http.get("/health")).json()
                    if health["waiting"] == 1:
                        break
                    await asyncio.sleep(0.05)
                assert health["waiting"] == 1
                refused = await http.post("/v1/chat/completions", json=short)
                assert refused.status_code == 429
                assert refused.json()["error"]["code"] == "queue_full"
            # leaving the block disconnected the long stream: the queued request runs
            second = await waiting
            assert second.status_code == 200 and second.json()["choices"][0]["message"]
            health = (await http.get("/health")).json()
            assert health["requests"]["cancelled"] == 1 and health["waiting"] == 0
            assert health["requests"]["completed"] == 1
    finally:
        server.stop()
    assert not slm.engine.lock.locked()  # nothing left running inside llama.cpp


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test installs it)")
async def test_a_request_the_policy_sends_to_the_llm_does_not_wait_for_the_slm(
    slm: LlamaCppChatModel, remote: OpenAICompatibleChatModel
) -> None:
    server = BackgroundServer(make_app(slm, remote, Limits(max_tokens=2000)))
    headers = {"Authorization": f"Bearer {KEY}"}
    long = {
        "model": "collab-slm", "max_tokens": 2000, "stream": True,
        "messages": [{"role": "user", "content": "Write a very long story about a lighthouse."}],
    }  # fmt: skip
    code = {
        "model": "collab-auto", "max_tokens": 8,
        "messages": [{"role": "user", "content": "Write a Python function that adds two numbers."}],
    }  # fmt: skip
    try:
        http = httpx.AsyncClient(base_url=server.url, headers=headers, timeout=300)
        async with http, http.stream("POST", "/v1/chat/completions", json=long) as story:
            lines = story.aiter_lines()
            while "content" not in (await anext(lines)):
                pass  # the SLM is busy with the story
            answered = await http.post("/v1/chat/completions", json=code)
            assert answered.status_code == 200, answered.text
            assert answered.json()["collab"]["strategy"] == "llm_only"
            assert slm.engine.lock.locked()  # the story is still being written meanwhile
    finally:
        server.stop()


async def test_a_model_queue_lets_its_capacity_in_and_the_rest_wait_in_order() -> None:
    from collab.models.queue import ModelQueue, QueueFullError

    queue, order, inside = ModelQueue(max_queue=3, capacity=2), [], []

    async def visit(i: int) -> None:
        async with queue.slot():
            inside.append(i)
            order.append(i)
            await asyncio.sleep(0.01)
            assert len(inside) <= 2
            inside.remove(i)

    tasks = [asyncio.create_task(visit(i)) for i in range(5)]
    await asyncio.sleep(0)
    assert queue.waiting == 3
    with pytest.raises(QueueFullError):
        queue.check()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4] and queue.waiting == 0


def test_web_chat_streams_with_attribution_in_chromium(served: BackgroundServer) -> None:
    from playwright.sync_api import sync_playwright

    shot = ROOT / "build" / "web_chat.png"
    shot.parent.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        try:
            page = browser.new_page(viewport={"width": 900, "height": 600})
            page.goto(served.url)
            page.fill("#key", KEY)
            page.dispatch_event("#key", "change")
            page.wait_for_selector("#model option[value='collab-auto']", state="attached")
            page.select_option("#model", "collab-auto")
            page.fill("#input", "Name a colour.")
            page.click("#send")
            meta = page.wait_for_selector(".attribution", timeout=60_000)
            text = meta.inner_text()
            page.screenshot(path=str(shot), full_page=True)
            answer = page.inner_text(".msg.assistant span")
        finally:
            browser.close()
    assert f"answered by {SMOL} (local)" in text and "strategy: slm_only" in text
    assert "saved 100% vs LLM-only" in text
    assert answer.strip()
    assert shot.stat().st_size > 5_000


def test_fuzzing_the_openapi_schema_gives_no_5xx(served: BackgroundServer) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    schema = schemathesis.openapi.from_url(f"{served.url}/openapi.json")
    operations = [
        schema[path][method]
        for path, method in (
            ("/v1/chat/completions", "POST"),
            ("/v1/models", "GET"),
            ("/health", "GET"),
        )
    ]
    modes = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
    cases = st.one_of([op.as_strategy(generation_mode=mode) for op in operations for mode in modes])
    seen: list[int] = []

    @settings(
        max_examples=240,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def check(case: Any) -> None:
        response = case.call(headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
        seen.append(response.status_code)
        assert response.status_code < 500, (case.body, response.text)

    check()
    assert len(seen) >= 200
    assert {200, 400} <= set(seen)  # real answers and real refusals both exercised


def _tool_shapes() -> Any:
    """Tool definitions and conversations with tool messages, well and badly formed."""
    from hypothesis import strategies as st

    scalar = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.text(max_size=6))
    types = st.sampled_from(["string", "integer", "number", "boolean", "array", "object",
                             "null", "banana", 7])  # fmt: skip
    prop = st.fixed_dictionaries(
        {}, optional={"type": types, "enum": st.lists(scalar, max_size=3),
                      "$ref": st.sampled_from(["#/$defs/A", "#", "elsewhere.json"]),
                      "items": st.just({"type": "string"}), "maxLength": st.integers(-1, 5)}
    )  # fmt: skip
    params = st.one_of(
        st.fixed_dictionaries({"type": st.just("object"),
                               "properties": st.dictionaries(st.text("abc", min_size=1,
                                                                     max_size=3), prop,
                                                             max_size=3)},
                              optional={"required": st.lists(st.text("abc", max_size=3))}),
        st.dictionaries(st.text(max_size=5), scalar, max_size=3),
        st.just({"type": "object", "properties": ["x"]}),
    )  # fmt: skip
    tool = st.fixed_dictionaries({"type": st.just("function"),
                                  "function": st.fixed_dictionaries(
                                      {"name": st.sampled_from(["f", "lookup"]),
                                       "parameters": params})})  # fmt: skip
    tool_message = st.fixed_dictionaries(
        {"role": st.just("tool"), "content": st.one_of(st.text(max_size=8), st.none())},
        optional={"tool_call_id": st.one_of(st.text(max_size=4), st.none())},
    )
    messages = st.lists(st.one_of(st.just({"role": "user", "content": "hi"}), tool_message),
                        min_size=1, max_size=3)  # fmt: skip
    return st.fixed_dictionaries(
        {"model": st.just("collab-slm"), "messages": messages, "max_tokens": st.just(8)},
        optional={"tools": st.lists(tool, max_size=2),
                  "tool_choice": st.sampled_from(["auto", "none", "required", "lookup"])},
    )  # fmt: skip


def test_fuzzing_tool_definitions_and_tool_messages_gives_no_5xx(
    served: BackgroundServer,
) -> None:
    from hypothesis import HealthCheck, given, settings

    seen: list[int] = []

    @settings(max_examples=60, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(body=_tool_shapes())
    def check(body: dict[str, Any]) -> None:
        reply = httpx.post(f"{served.url}/v1/chat/completions", json=body,
                           headers={"Authorization": f"Bearer {KEY}"}, timeout=120)  # fmt: skip
        seen.append(reply.status_code)
        assert reply.status_code < 500, (body, reply.text)

    check()
    assert 400 in seen and len(seen) == 60


def test_create_agent_through_chat_openai_against_collab_serve(served: BackgroundServer) -> None:
    from langchain.agents import create_agent

    from tests.test_middleware import QUESTIONS, finished, get_weather, stock_price

    chat = ChatOpenAI(
        base_url=f"{served.url}/v1", api_key=KEY, model="collab-auto", max_tokens=48,
        max_retries=0, temperature=0.0,
    )  # fmt: skip
    agent = create_agent(model=chat, tools=[get_weather, stock_price])
    used_a_tool = 0
    for question in QUESTIONS:
        out = agent.invoke({"messages": [("user", question)]}, {"recursion_limit": 12})
        assert finished(out["messages"]), (question, out["messages"])
        used_a_tool += any(m.type == "tool" for m in out["messages"])
    assert used_a_tool >= 3  # SmolLM2 calls on 3 of 10 at its calibrated threshold


def test_create_agent_through_chat_openai_calls_the_right_tool_on_every_question(
    qwen_pair: CollabChatModel,
) -> None:
    """The Qwen pair of tests/test_middleware.py, this time behind ``collab serve``."""
    from langchain.agents import create_agent

    from tests.test_middleware import CALLS, NEEDS, QUESTIONS, finished, get_weather, stock_price

    workflows = workflows_for(qwen_pair.slm, qwen_pair.llm, pair=qwen_pair)
    server = BackgroundServer(create_app(workflows, limits=Limits(max_tokens=64)))
    chat = ChatOpenAI(
        base_url=f"{server.url}/v1", api_key="-", model="collab-auto", max_tokens=48,
        max_retries=0, temperature=0.0,
    )  # fmt: skip
    agent = create_agent(model=chat, tools=[get_weather, stock_price])
    try:
        for question, needed in zip(QUESTIONS, NEEDS, strict=True):
            CALLS.clear()
            out = agent.invoke({"messages": [("user", question)]}, {"recursion_limit": 12})
            messages = out["messages"]
            assert finished(messages), (question, messages)
            assert dict(CALLS) == {needed: 1}, (question, CALLS)
            answer = str(messages[-1].content)
            facts = ("123.45",) if needed.startswith("stock") else ("18", "sunny")
            assert any(fact in answer for fact in facts), (question, answer)
    finally:
        server.stop()
