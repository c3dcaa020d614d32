"""The policy, privacy detection and threshold arithmetic: pure logic, no model needed."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage

from collab.errors import ConfigurationError
from collab.policy import Ledger, Policy, Request, classify
from collab.privacy import Detector, Vault
from collab.strategies.cascade import Record, pick_threshold
from collab.strategies.route import TrainedScorer
from collab.strategies.signals import code_passes_examples, json_matches

RULES = {
    "default": "cascade",
    "rules": [
        {"name": "tools-local", "when": {"task": ["tool_call"]}, "strategy": "slm_only"},
        {"name": "vip", "when": {"tags": ["vip"]}, "strategy": "llm_only"},
        {"name": "pii", "when": {"sensitive": True}, "strategy": "slm_only"},
        {"name": "long", "when": {"min_prompt_tokens": 1000}, "strategy": "draft_verify"},
        {"name": "short", "when": {"max_prompt_tokens": 5}, "strategy": "route"},
    ],
    "privacy": "allow",
}


@pytest.mark.parametrize(
    ("request_", "strategy", "rule"),
    [
        (Request(task="tool_call", prompt_tokens=50), "slm_only", "tools-local"),
        (Request(tags=frozenset({"vip", "x"}), prompt_tokens=50), "llm_only", "vip"),
        (Request(sensitive=("email",), prompt_tokens=50), "slm_only", "pii"),
        (Request(prompt_tokens=2000), "draft_verify", "long"),
        (Request(prompt_tokens=3), "route", "short"),
        (Request(prompt_tokens=50), "cascade", None),
    ],
)
def test_each_rule_type_matches(request_: Request, strategy: str, rule: str | None) -> None:
    decision = Policy.model_validate(RULES).decide(request_)
    assert (decision.strategy, decision.rule) == (strategy, rule)
    assert (rule or "default") in decision.reason


def test_budgets_send_requests_to_the_slm_and_say_why() -> None:
    policy = Policy(
        default="llm_only",
        budget={"daily_usd": 1.0, "max_cost_per_request_usd": 0.01, "latency_target_s": 2.0},
    )
    ok = policy.decide(Request(), spent_today_usd=0.5, llm_cost_usd=0.001, llm_latency_s=1.0)
    assert ok.strategy == "llm_only"
    spent = policy.decide(Request(), spent_today_usd=1.0)
    assert spent.strategy == "slm_only" and "daily LLM budget" in spent.reason
    costly = policy.decide(Request(), llm_cost_usd=0.05)
    assert costly.strategy == "slm_only" and "per request" in costly.reason
    slow = policy.decide(Request(), llm_latency_s=5.0)
    assert slow.strategy == "slm_only" and "5.0s" in slow.reason and "target" in slow.reason


@pytest.mark.parametrize("action", ["local", "refuse", "redact", "allow"])
def test_privacy_actions(action: str) -> None:
    decision = Policy(default="llm_only", privacy=action).decide(Request(sensitive=("iban",)))
    assert decision.privacy == action
    assert decision.strategy == ("slm_only" if action in ("local", "refuse") else "llm_only")
    assert "iban" in decision.reason
    clean = Policy(default="llm_only", privacy=action).decide(Request())
    assert clean.privacy == "none" and clean.strategy == "llm_only"


def test_ledger_keeps_the_days_spend_on_disk(tmp_path: Path) -> None:
    Ledger(tmp_path / "spend.sqlite").add(0.25)
    Ledger(tmp_path / "spend.sqlite").add(0.5)
    assert Ledger(tmp_path / "spend.sqlite").spent_today() == pytest.approx(0.75)


def test_policy_files_load_and_bad_ones_name_file_and_field(tmp_path: Path) -> None:
    good = tmp_path / "policy.yaml"
    good.write_text("default: route\nrules:\n  - when: {tags: [fast]}\n    strategy: slm_only\n")
    assert Policy.from_file(good).rules[0].strategy == "slm_only"
    toml = tmp_path / "policy.toml"
    toml.write_text('default = "llm_only"\n[budget]\ndaily_usd = 2.5\n')
    assert Policy.from_file(toml).budget.daily_usd == 2.5

    bad_value = tmp_path / "bad.toml"
    bad_value.write_text('default = "llm_only"\n[[rules]]\nstrategy = "telepathy"\n')
    with pytest.raises(ConfigurationError) as err:
        Policy.from_file(bad_value)
    assert "bad.toml" in str(err.value) and "rules.0.strategy" in str(err.value)
    assert "telepathy" in str(err.value)

    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("budget:\n  dayly_usd: 3\n")
    with pytest.raises(ConfigurationError, match=r"unknown\.yaml.*budget\.dayly_usd"):
        Policy.from_file(unknown)

    broken = tmp_path / "broken.toml"
    broken.write_text("default = \n")
    with pytest.raises(ConfigurationError, match=r"broken\.toml is not valid TOML"):
        Policy.from_file(broken)
    with pytest.raises(ConfigurationError, match="cannot read"):
        Policy.from_file(tmp_path / "missing.toml")


def test_task_kinds() -> None:
    def kind(text: str) -> str:
        return classify([HumanMessage(text)])

    assert kind("Write a python function that reverses a list") == "code"
    assert kind("What is 17 * 23?") == "math"
    assert kind("Extract every date from this letter") == "extraction"
    assert kind("How are you today?") == "chat"
    assert classify([HumanMessage("hi")], has_tools=True) == "tool_call"


PLANTED = {
    "email": "jane.doe+news@example.org",
    "phone": "+44 20 7946 0958",
    "card": "4111 1111 1111 1111",
    "iban": "DE89 3704 0044 0532 0130 00",
    "national_id": "078-05-1120",
    "name": "Margaret Hamilton",
}


def test_sensitive_spans_are_found_and_checksums_respected() -> None:
    text = (
        f"Customer: {PLANTED['name']}, mail {PLANTED['email']}, tel {PLANTED['phone']}, "
        f"card {PLANTED['card']}, IBAN {PLANTED['iban']}, SSN {PLANTED['national_id']}."
    )
    found = {f.kind: f.text for f in Detector().find(text)}
    assert found == PLANTED
    assert not [f for f in Detector().find("card 4111 1111 1111 1112") if f.kind == "card"]
    assert not Detector().find("The meeting is in room 12 at 3pm.")


def test_redaction_round_trip() -> None:
    vault = Vault(Detector(names=["Ada Lovelace"]))
    text = "Ada Lovelace (ada@example.com) wrote to ada@example.com; Lovelace signed."
    vault.learn(text)
    hidden = vault.redact(text)
    assert "ada@example.com" not in hidden and "Lovelace" not in hidden
    assert hidden.count("[EMAIL_1]") == 2
    assert vault.restore(hidden) == text
    assert vault.pending("Dear [NAME_") == len("Dear ")


def test_threshold_reaches_quality_at_least_escalation() -> None:
    records = [
        Record(0.9, True, True),
        Record(0.8, True, True),
        Record(0.4, False, True),
        Record(0.3, False, False),
        Record(0.2, True, True),
    ]
    point = pick_threshold(records, quality=0.8)
    assert point.threshold == pytest.approx(0.8) and point.llm_share == pytest.approx(0.6)
    assert point.quality >= 0.8
    unreachable = pick_threshold(records, quality=1.0)
    assert unreachable.quality == pytest.approx(0.8)


def test_trained_scorer_learns_which_requests_are_hard() -> None:
    easy = [f"What is the capital of country number {i}?" for i in range(20)]
    hard = [f"Prove theorem {i} about prime gaps with a rigorous argument." for i in range(20)]
    scorer = TrainedScorer().fit(easy + hard, [False] * 20 + [True] * 20)
    assert scorer.difficulty([HumanMessage("Prove theorem 99 rigorously.")]) > 0.5
    assert scorer.difficulty([HumanMessage("What is the capital of country 77?")]) < 0.5
    with pytest.raises(ConfigurationError, match="both kinds"):
        TrainedScorer().fit(easy, [False] * 20)


def test_task_checks_run_code_and_validate_json() -> None:
    question = '```python\ndef add(a, b):\n    """\n    >>> add(2, 3)\n    5\n    """\n```'
    assert code_passes_examples(question, "```python\ndef add(a, b):\n    return a + b\n```") == 1
    assert code_passes_examples(question, "    return a - b\n") == 0
    assert (
        code_passes_examples(question, "def add(a, b):\n    while True: pass\n", timeout_s=1) == 0
    )
    assert code_passes_examples("no examples here", "x = 1") is None

    from pydantic import BaseModel

    class Point(BaseModel):
        x: int
        y: int

    check = json_matches(Point)
    assert check("", '```json\n{"x": 1, "y": 2}\n```') is True
    assert check("", '{"x": "one"}') is False
