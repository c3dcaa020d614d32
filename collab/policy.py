"""The policy: per request, which strategy runs, and why.

Rules match on task kind, request tags, privacy findings and prompt length;
the first that matches picks the strategy, else the default does. Budgets
(cost per request, a daily budget kept on disk, a latency target) can then
send the request to the SLM alone. Loadable from TOML or YAML.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import yaml
from langchain_core.messages import BaseMessage
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from collab.errors import ConfigurationError
from collab.ledger import Ledger
from collab.messages import text_content
from collab.options import TaskKind
from collab.privacy.kinds import KINDS, check_kinds
from collab.strategies.registry import check_name, uses_llm

PrivacyAction = Literal["redact", "local", "refuse", "allow"]


def _known_kinds(kinds: list[str]) -> list[str]:
    return list(check_kinds(kinds))


# A registered strategy's name (collab.strategies.register_strategy adds names).
StrategyName = Annotated[str, AfterValidator(check_name)]


class Request(BaseModel):
    """What the policy looks at: never the text itself, only facts about it."""

    task: TaskKind = "chat"
    tags: frozenset[str] = frozenset()
    sensitive: tuple[str, ...] = Field((), description="kinds of sensitive data found")
    prompt_tokens: int = 0
    max_tokens: int = 512


class Match(BaseModel):
    """Conditions of a rule; all given ones must hold."""

    model_config = ConfigDict(extra="forbid")

    task: list[TaskKind] | None = None
    tags: list[str] | None = Field(None, description="any of these request tags")
    sensitive: bool | None = Field(None, description="whether sensitive data was found")
    min_prompt_tokens: int | None = Field(None, ge=0)
    max_prompt_tokens: int | None = Field(None, ge=0)

    def holds(self, request: Request) -> bool:
        return (
            (self.task is None or request.task in self.task)
            and (self.tags is None or bool(request.tags & set(self.tags)))
            and (self.sensitive is None or bool(request.sensitive) == self.sensitive)
            and (self.min_prompt_tokens is None or request.prompt_tokens >= self.min_prompt_tokens)
            and (self.max_prompt_tokens is None or request.prompt_tokens <= self.max_prompt_tokens)
        )

    def describe(self) -> str:
        parts = [f"{k} {v}" for k, v in self.model_dump(exclude_none=True).items()]
        return ", ".join(parts) or "always"


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    when: Match = Field(default_factory=Match)
    strategy: StrategyName


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_cost_per_request_usd: float | None = Field(None, ge=0)
    daily_usd: float | None = Field(None, ge=0)
    latency_target_s: float | None = Field(None, gt=0, description="for the LLM's answers")


class RouteSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(0.5, ge=0, le=1, description="difficulty at which the LLM answers")


class CascadeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signal: Literal[
        "logprob_mean", "logprob_min", "self_verification", "code_examples",
        "llm_logprob_mean", "llm_logprob_min",
    ] = Field("logprob_mean", description="llm_*: the LLM reads the SLM's answer")  # fmt: skip
    threshold: float = Field(0.5, ge=0, le=1, description="confidence below which to escalate")


class Decision(BaseModel):
    strategy: StrategyName
    reason: str
    rule: str | None = None
    privacy: Literal["none", "redact", "local", "refuse", "allow"] = "none"


class Policy(BaseModel):
    """How requests are handled. Every field has a safe default; see ``from_file``."""

    model_config = ConfigDict(extra="forbid")

    default: StrategyName = "cascade"
    rules: list[Rule] = Field(default_factory=list)
    privacy: PrivacyAction = Field(
        "redact",
        description="when sensitive data is found: redact it before the LLM sees "
        "it, keep the request local, refuse it, or allow it as is",
    )
    names: list[str] = Field(
        default_factory=list, description="people's names to protect (found without them too)"
    )
    sensitive: Annotated[list[str], AfterValidator(_known_kinds)] = Field(
        default_factory=lambda: [str(k) for k in KINDS],
        description="the kinds of sensitive data to find: " + ", ".join(KINDS),
    )
    budget: Budget = Field(default_factory=Budget)
    on_llm_down: Literal["slm", "fail"] = "slm"
    route: RouteSettings = Field(default_factory=RouteSettings)
    cascade: CascadeSettings = Field(default_factory=CascadeSettings)
    ledger: Path | str | None = Field(
        None,
        description="where the daily spend is kept: a SQLite file, or a postgresql:// URL "
        "that several processes or machines share",
    )

    @classmethod
    def from_file(cls, path: str | Path) -> Policy:
        """A policy from TOML or YAML; a bad file names the file, the field and the problem."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read policy file {path}: {exc.strerror}", hint="check the path"
            ) from exc
        try:
            data = yaml.safe_load(text) if path.suffix in {".yaml", ".yml"} else tomllib.loads(text)
        except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(
                f"policy file {path} is not valid {path.suffix[1:].upper()}: {exc}",
                hint="fix the syntax",
            ) from exc
        try:
            return cls.model_validate(data or {})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
                + (f" (got {e['input']!r})" if not isinstance(e["input"], dict) else "")
                for e in exc.errors()
            )
            raise ConfigurationError(
                f"invalid policy file {path}: {problems}",
                hint="see collab.policy.Policy for the fields and their allowed values",
            ) from exc

    def decide(
        self,
        request: Request,
        *,
        spent_today_usd: float = 0.0,
        llm_cost_usd: float = 0.0,
        llm_latency_s: float | None = None,
    ) -> Decision:
        """The strategy for ``request`` and the reason, given what the LLM costs right now.

        ``llm_cost_usd``: what this request would cost at most if the LLM answered it;
        ``llm_latency_s``: how long the LLM's recent answers took.
        """
        privacy: Literal["none", "redact", "local", "refuse", "allow"] = "none"
        found = ", ".join(sorted(set(request.sensitive)))
        if request.sensitive:
            privacy = self.privacy
            if privacy == "refuse":
                return Decision(
                    strategy="slm_only",
                    privacy="refuse",
                    reason=f"sensitive data ({found}): refused by policy",
                )
            if privacy == "local":
                return Decision(
                    strategy="slm_only",
                    privacy="local",
                    reason=f"sensitive data ({found}): kept on this machine",
                )
        strategy, rule, reason = self.default, None, f"default strategy {self.default}"
        for i, r in enumerate(self.rules):
            if r.when.holds(request):
                strategy, rule = r.strategy, r.name or f"rules[{i}]"
                reason = f"rule {rule} ({r.when.describe()}): {strategy}"
                break
        if uses_llm(strategy):
            over = self._over_budget(spent_today_usd, llm_cost_usd, llm_latency_s)
            if over is not None:
                strategy, reason = "slm_only", over
        if privacy != "none":
            reason += f"; sensitive data ({found}): {privacy}"
        return Decision(strategy=strategy, reason=reason, rule=rule, privacy=privacy)

    def _over_budget(
        self, spent_today_usd: float, llm_cost_usd: float, llm_latency_s: float | None
    ) -> str | None:
        """Why the LLM may not answer now (a budget is spent or exceeded), or None."""
        budget = self.budget
        if budget.daily_usd is not None and spent_today_usd >= budget.daily_usd:
            return (
                f"daily LLM budget ${budget.daily_usd:g} spent "
                f"(${spent_today_usd:.4f} today): SLM answers"
            )
        cap = budget.max_cost_per_request_usd
        if cap is not None and llm_cost_usd > cap:
            return (
                f"the LLM could cost ${llm_cost_usd:.4f} here, over the "
                f"${cap:g} per request: SLM answers"
            )
        target = budget.latency_target_s
        if target is not None and llm_latency_s is not None and llm_latency_s > target:
            return (
                f"the LLM takes {llm_latency_s:.1f}s lately, over the "
                f"{target:g}s target: SLM answers"
            )
        return None


# ---- facts about a request -----------------------------------------------------------

_CODE = re.compile(r"```|\bdef \w+\(|\bclass \w+|\bfunction\b|\bpython\b|\bcode\b|\bbug\b", re.I)
_MATH = re.compile(
    r"\d\s*[-+*/^=]\s*\d|\b(solve|calculate|compute|equation|integral|how many)\b", re.I
)
_EXTRACT = re.compile(r"\b(extract|list all|find all|pull out|parse)\b", re.I)


def classify(messages: Sequence[BaseMessage], has_tools: bool = False) -> TaskKind:
    """The task kind of a request, from its last human turn (tools bound: a tool call)."""
    if has_tools:
        return "tool_call"
    text = next((text_content(m.content) for m in reversed(messages) if m.type == "human"), "")
    if _CODE.search(text):
        return "code"
    if _MATH.search(text):
        return "math"
    if _EXTRACT.search(text):
        return "extraction"
    return "chat"


__all__ = ["Decision", "Ledger", "Match", "Policy", "Request", "Rule", "classify"]
