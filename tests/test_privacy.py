"""Privacy against a real LLM server behind a proxy that records every byte it receives.

Each shape of personal data that once leaked is sent through ``CollabChatModel``
with the policy's privacy set to ``redact``; the proxy must never see the value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from pydantic import BaseModel, ValidationError

from collab.chat_model import CollabChatModel
from collab.errors import ConfigurationError
from collab.models.llamacpp import LlamaCppChatModel
from collab.models.local_server import LocalLLMServer, free_port
from collab.models.openai import OpenAICompatibleChatModel
from collab.policy import Policy
from collab.privacy import Detector, Vault
from collab.trace import Trace
from tests.proxy import RecordingProxy
from tests.servers import SMOL

# (conversation, what must never reach the server)
SHAPES: dict[str, tuple[list[BaseMessage], list[str]]] = {
    "no cue": (
        [HumanMessage("Let Bartholomew Nakashima-Reyes know his parcel is delayed.")],
        ["Bartholomew", "Nakashima"],
    ),
    "name beside an email": (
        [HumanMessage("Write a short reply to Anika Sorensen (anika.sorensen@example.org) "
                      "confirming the meeting.")],
        ["Anika", "Sorensen", "anika.sorensen@example.org"],
    ),
    "name and phone in a quote": (
        [HumanMessage("Translate to German: 'Please ring Tomasz Weber on +44 20 7946 0000 "
                      "tomorrow.'")],
        ["Tomasz", "Weber", "7946"],
    ),
    "lower case": ([HumanMessage("my name is devika rao, please reset my account")],
                   ["devika", "rao"]),
    "accents": ([HumanMessage("Zoë Müller asked for her invoice. Draft a reply.")],
                ["Zoë", "Müller"]),
    "capitals": ([HumanMessage("CALL ZOË MÜLLER BACK TODAY.")], ["ZOË", "MÜLLER"]),
    "name from the system message": (
        [SystemMessage("The customer on this ticket is Ingrid Halvorsen."),
         HumanMessage("Tell ingrid that her order has shipped.")],
        ["Ingrid", "Halvorsen"],
    ),
    "previous assistant turn": (
        [HumanMessage("Who handles refunds?"),
         AIMessage("Refunds are handled by Oluwaseun Bankole."),
         HumanMessage("Write one line thanking them.")],
        ["Oluwaseun", "Bankole"],
    ),
    "tool-call arguments and results": (
        [HumanMessage("Find the customer and summarize."),
         AIMessage("", tool_calls=[{"name": "lookup", "args": {"email": "li.wei@example.com"},
                                    "id": "call_1"}]),
         ToolMessage("Customer: Priyanka Raghunathan, phone +1 415 555 0199",
                     tool_call_id="call_1"),
         HumanMessage("Summarize in one line.")],
        ["li.wei@example.com", "Priyanka", "Raghunathan", "555 0199"],
    ),
    "secrets": (
        [HumanMessage("My password is Tr0ub4dor&3 and my API key is "
                      "sk-live-9f8e7d6c5b4a39281706. Is that safe?")],
        ["Tr0ub4dor", "sk-live-9f8e7d6c5b4a39281706"],
    ),
    "street address": ([HumanMessage("Ship the parcel to 742 Evergreen Terrace, Springfield.")],
                       ["742", "Evergreen"]),
    "date of birth": ([HumanMessage("I was born on 14 February 1987. Which star sign am I?")],
                      ["1987"]),
    "phone in words": (
        [HumanMessage("My number is oh seven seven nine oh, one two three four five six.")],
        ["seven seven nine"],
    ),
}  # fmt: skip


@pytest.fixture()
def proxy(server: LocalLLMServer) -> Iterator[RecordingProxy]:
    recording = RecordingProxy(server.base_url)
    yield recording
    recording.close()


def llm_at(url: str, max_tokens: int = 8, retries: int = 2) -> OpenAICompatibleChatModel:
    return OpenAICompatibleChatModel(
        location="remote", model=SMOL, base_url=url, temperature=0.0,
        max_tokens=max_tokens, timeout=60, max_retries=retries,
    )  # fmt: skip


def pair(slm: LlamaCppChatModel, llm: OpenAICompatibleChatModel, tmp_path: Path,
         **policy: object) -> CollabChatModel:  # fmt: skip
    settings = {"default": "llm_only", "privacy": "redact", "ledger": tmp_path / "s.db", **policy}
    return CollabChatModel(slm=slm, llm=llm, policy=Policy.model_validate(settings))


def leaks(values: list[str], proxy: RecordingProxy) -> list[str]:
    received = proxy.received().lower()
    return [v for v in values if v.lower() in received]


def trace(message: BaseMessage) -> Trace:
    return Trace.from_metadata(message.response_metadata)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_each_shape_is_kept_off_the_server(
    slm: LlamaCppChatModel, proxy: RecordingProxy, tmp_path: Path, shape: str
) -> None:
    messages, secret = SHAPES[shape]
    policy = {"names": ["Zoë Müller"]} if shape == "capitals" else {}
    answer = pair(slm, llm_at(proxy.base_url), tmp_path, **policy).invoke(messages)
    t = trace(answer)
    assert t.extra["policy"]["privacy"] == "redact" and t.extra["redacted"]
    assert proxy.bodies and not leaks(secret, proxy)
    # the audit is exactly what the server received, request by request
    assert [r["body"] for r in t.extra["remote_audit"]] == [b.decode() for b in proxy.bodies]


def test_tool_call_arguments_come_back_restored(
    slm: LlamaCppChatModel, proxy: RecordingProxy, tmp_path: Path
) -> None:
    class lookup(BaseModel):
        """Look up a customer by e-mail address."""

        email: str

    chat = pair(slm, llm_at(proxy.base_url, max_tokens=40), tmp_path)
    ask = 'Call lookup with {"email": "anika.sorensen@example.org"}'
    answer = chat.bind_tools([lookup], tool_choice="any").invoke(ask)
    assert answer.tool_calls[0]["args"] == {"email": "anika.sorensen@example.org"}
    assert "[EMAIL_1]" in proxy.received() and not leaks(["anika.sorensen"], proxy)


def test_a_placeholder_cut_by_the_token_limit_never_reaches_the_user(
    slm: LlamaCppChatModel, proxy: RecordingProxy, tmp_path: Path
) -> None:
    ask = [HumanMessage("Repeat exactly: +44 20 7946 0000")]
    answers = []
    for max_tokens in range(1, 11):
        chat = pair(slm, llm_at(proxy.base_url, max_tokens=max_tokens), tmp_path)
        answers.append("".join(str(c.content) for c in chat.stream(ask)))
    assert any("+44 20 7946 0000" in a for a in answers), answers  # restored when whole
    assert not [a for a in answers if re.search(r"\[\s*P|PHONE", a)], answers
    assert not leaks(["7946"], proxy)


def test_failed_attempts_are_in_the_audit(slm: LlamaCppChatModel, tmp_path: Path) -> None:
    # a proxy whose server is gone: it records what arrives, and the call fails
    proxy = RecordingProxy(f"http://127.0.0.1:{free_port()}/v1")
    try:
        answer = pair(slm, llm_at(proxy.base_url, retries=1), tmp_path).invoke(
            "Write to anika.sorensen@example.org that the refund is on its way.", max_tokens=8
        )
        t = trace(answer)
        assert "llm_down" in t.extra and len(proxy.bodies) >= 2
        assert [r["body"] for r in t.extra["remote_audit"]] == [b.decode() for b in proxy.bodies]
        assert not leaks(["anika.sorensen"], proxy)
    finally:
        proxy.close()


def test_privacy_local_sends_nothing_at_all(
    slm: LlamaCppChatModel, proxy: RecordingProxy, tmp_path: Path
) -> None:
    chat = pair(slm, llm_at(proxy.base_url), tmp_path, privacy="local")
    answer = chat.invoke("Let Bartholomew Nakashima-Reyes know his parcel is delayed.")
    assert trace(answer).strategy == "slm_only" and answer.content
    assert proxy.bodies == []


# ---- the vault and the policy, without models ----------------------------------------


def test_one_placeholder_per_value_across_messages_cases_and_spacing() -> None:
    vault = Vault(Detector())
    vault.learn_messages(
        [
            SystemMessage("Customer: Ingrid Halvorsen, ingrid@example.org"),
            HumanMessage("Tell INGRID   HALVORSEN at Ingrid@Example.org hi"),
        ]
    )
    sent = vault.redact("Tell INGRID   HALVORSEN at Ingrid@Example.org hi; ingrid too")
    assert sent == "Tell [NAME_1] at [EMAIL_1] hi; [NAME_2] too"
    assert vault.restore(sent) == "Tell Ingrid Halvorsen at ingrid@example.org hi; Ingrid too"


def test_mangled_and_cut_placeholders() -> None:
    vault = Vault(Detector())
    vault.learn("Call +44 20 7946 0000 or +1 415 555 0199 for Anika Sorensen")
    assert vault.restore("ring PHONE_1, [phone 2] or [Name_1].") == (
        "ring +44 20 7946 0000, +1 415 555 0199 or Anika Sorensen."
    )
    assert vault.pending("Call [PHONE_") == len("Call ")
    assert vault.finish("[PHONE_2") == ("+1 415 555 0199", [])  # one placeholder begins so
    assert vault.finish("[PHO") == ("", ["[PHO"])  # two do: dropped, and said
    assert Vault.unresolved(vault.restore("see [NAME_7]")) == ["[NAME_7]"]


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        # a word after a name that only looks like a company's suffix ("as", "co")
        ("I want to add Inessa Samoylova as a beneficiary", "name", "Inessa Samoylova"),
        ("Tomaszewski began writing as a teenager", "name", "Tomaszewski"),
        # the town, country and postcode after a street, on its line and below it
        ("Send it to 587 Canelones 2266, Maniitsoq, Greenland", "address",
         "587 Canelones 2266, Maniitsoq, Greenland"),
        ("It's at 693 Meierijlaan 176\nISSEKA\n, WA\n 65034", "address", "65034"),
        ("the corner of Jeronýmova 1960 and Weöres Hills", "address",
         "corner of Jeronýmova 1960 and Weöres Hills"),
        ("The office is at Catalina and 4010 Rockford Road", "address",
         "Catalina and 4010 Rockford Road"),
    ],
)  # fmt: skip
def test_detection_shapes_from_the_benchmark(text: str, kind: str, value: str) -> None:
    assert (kind, value) in {(f.kind, f.text) for f in Detector().find(text)}


def test_a_company_or_a_lower_case_word_is_no_name() -> None:
    assert Detector(["name"]).find("Shares of Brahim Holdings PLC rose") == []
    # names-dataset lists "merges" as a name somewhere: lower case, only Faker's lists count
    assert Detector(["name"]).find("a function that merges two sorted lists") == []


def test_each_kind_can_be_switched_off() -> None:
    text = "Anika Sorensen, anika@example.org"
    assert {f.kind for f in Detector().find(text)} == {"name", "email"}
    assert {f.kind for f in Detector(["email"]).find(text)} == {"email"}


def test_an_unknown_kind_is_refused_naming_the_kinds(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"(?s)'passport'.*the kinds are: name, email"):
        Policy(sensitive=["name", "passport"])
    path = tmp_path / "policy.toml"
    path.write_text('sensitive = ["name", "passport"]\n')
    with pytest.raises(
        ConfigurationError, match=r"(?s)policy.toml.*sensitive.*'passport'.*name, email"
    ):
        Policy.from_file(path)


def test_speculation_against_a_remote_verifier_never_sees_sensitive_text(
    slm: LlamaCppChatModel, remote: OpenAICompatibleChatModel, tmp_path: Path
) -> None:
    from collab.models import profile_of
    from collab.speculative import SpeculativeChatModel

    spec = SpeculativeChatModel.remote(slm, remote, gamma=8, temperature=0.0, max_tokens=8)
    assert profile_of(spec).location == "remote"  # its verifier reads the text
    chat = CollabChatModel(
        slm=slm, llm=remote, speculative=spec,
        policy=Policy(default="speculative", privacy="redact", ledger=tmp_path / "s.db"),
    )  # fmt: skip
    decision = chat.decide([HumanMessage("Write to anika.sorensen@example.org")])
    assert decision.strategy == "llm_only" and "unredacted" in decision.reason
    assert chat.decide([HumanMessage("Name a colour.")]).strategy == "speculative"
