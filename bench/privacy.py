"""Privacy on data nobody here wrote: presidio-evaluator's templates and fake people.

Four measurements, in one run, on the held-out split (``--split test``; the
detector's thresholds were tuned on ``--split dev``):

1. detection: per kind, the share of sensitive values no longer in the text after
   redaction, and over-redaction (non-sensitive slots, such as countries, towns,
   companies and nationalities, that lost a word);
2. the wire: the prompts, multi-turn conversations and tool-calling conversations
   built from the same values, sent through ``CollabChatModel`` (privacy
   ``redact``) to a real LLM server (the stand-in) behind a proxy that records
   every byte it receives: per kind, the values that reached the proxy;
3. restore: answers that must contain a value ("Repeat exactly: ..."), with
   privacy on and off, same model and prompts;
4. latency: what redaction and restore add per request.

    python bench/privacy.py [--split test] [--prompts 500] [--restore 60]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from rich.console import Console
from rich.progress import track
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.privacy_data import SPLITS, Sample, leaked, sentences, touched
from collab import CollabChatModel, Policy
from collab.models import catalog
from collab.models.llamacpp import LlamaCppChatModel
from collab.models.local_server import LocalLLMServer
from collab.models.openai import OpenAICompatibleChatModel
from collab.privacy import Detector, Vault
from collab.privacy.vault import strings_in
from tests.proxy import RecordingProxy

console = Console(width=120)
SMOL = "smollm2-135m"


def detection(samples: list[Sample]) -> tuple[Counter[str], Counter[str], int, int, float]:
    """(values per kind, leaked per kind, plain slots, over-redacted slots, ms per text)."""
    total: Counter[str] = Counter()
    missed: Counter[str] = Counter()
    plain = over = 0
    start = time.perf_counter()
    for sample in samples:
        vault = Vault(Detector())
        vault.learn(sample.text)
        sent = vault.redact(sample.text)
        for kind, value in sample.values:
            total[kind] += 1
            missed[kind] += leaked(kind, value, sent)
        plain += len(sample.plain)
        over += sum(touched(v, sent) for v in sample.plain)
    ms = (time.perf_counter() - start) * 1000 / max(1, len(samples))
    return total, missed, plain, over, ms


def conversations(samples: list[Sample]) -> Iterator[tuple[str, list[BaseMessage], Sample]]:
    """Single prompts, then multi-turn and tool-calling conversations from the same values."""
    for sample in samples:
        yield "prompt", [HumanMessage(sample.text)], sample
    people = [(s, v) for s in samples for k, v in s.values if k == "name"]
    for i, (sample, person) in enumerate(people[:60]):
        first = person.split()[0].lower()
        yield "multi-turn", [
            HumanMessage(sample.text),
            AIMessage(f"Noted. I will follow up with {person} about this."),
            HumanMessage(f"Also tell {first} that the meeting moved to Friday."),
        ], sample  # fmt: skip
        other = samples[(i * 7 + 3) % len(samples)]
        args = {"name": person, "note": other.text[:120]}
        yield "tools", [
            HumanMessage("Find this customer's record and summarize it."),
            AIMessage("", tool_calls=[{"name": "lookup", "args": args, "id": f"call_{i}"}]),
            ToolMessage(f"Record: {sample.text}", tool_call_id=f"call_{i}"),
            HumanMessage("Summarize the record in one line."),
        ], Sample(sample.text, [*sample.values, *other.values])  # fmt: skip


def received_text(bodies: list[bytes]) -> str:
    """What the server could read: every string in the JSON bodies, unescaped."""
    out = []
    for body in bodies:
        try:
            out += strings_in(json.loads(body))
        except (json.JSONDecodeError, UnicodeDecodeError):
            out.append(body.decode("utf-8", errors="replace"))
    return "\n".join(out)


def pair(
    slm: LlamaCppChatModel, url: str, privacy: Literal["redact", "allow"], max_tokens: int
) -> CollabChatModel:
    llm = OpenAICompatibleChatModel(
        location="remote", model=SMOL, base_url=url, temperature=0.0,
        max_tokens=max_tokens, timeout=120,
    )  # fmt: skip
    ledger = Path(tempfile.gettempdir()) / "collab-bench-privacy.db"
    policy = Policy(default="llm_only", privacy=privacy, ledger=ledger)
    return CollabChatModel(slm=slm, llm=llm, policy=policy)


def the_wire(
    slm: LlamaCppChatModel, proxy: RecordingProxy, samples: list[Sample]
) -> dict[str, Any]:
    chat = pair(slm, proxy.base_url, "redact", max_tokens=4)
    total: Counter[str] = Counter()
    reached: Counter[str] = Counter()
    shapes: Counter[str] = Counter()
    examples: list[str] = []
    for shape, messages, sample in track(list(conversations(samples)), description="the wire"):
        before = len(proxy.bodies)
        chat.invoke(messages)
        got = received_text(proxy.bodies[before:])
        shapes[shape] += 1
        for kind, value in sample.values:
            total[kind] += 1
            if leaked(kind, value, got):
                reached[kind] += 1
                examples.append(f"{kind}: {value!r}")
    return {"total": total, "reached": reached, "shapes": shapes, "examples": examples}


def restore(slm: LlamaCppChatModel, url: str, samples: list[Sample], n: int) -> dict[str, Any]:
    values = [(k, v) for s in samples for k, v in s.values if "\n" not in v][:n]
    result: dict[str, Any] = {"n": len(values)}
    for privacy in ("redact", "allow"):  # type: Literal["redact", "allow"]
        chat = pair(slm, url, privacy, max_tokens=48)
        hits, seconds = 0, []
        for _, value in values:
            start = time.perf_counter()
            answer = str(chat.invoke([HumanMessage(f"Repeat exactly: {value}")]).content)
            seconds.append(time.perf_counter() - start)
            hits += value.lower() in answer.lower()
        result[privacy] = {"hits": hits, "seconds": statistics.mean(seconds)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=list(SPLITS), default="test")
    parser.add_argument("--prompts", type=int, default=500)
    parser.add_argument("--restore", type=int, default=60)
    parser.add_argument("--detect-only", action="store_true", help="skip the model runs")
    args = parser.parse_args()

    samples = sentences(SPLITS[args.split], args.prompts)
    total, missed, plain, over, ms = detection(samples)
    table = Table(title=f"detection, {len(samples)} rendered templates ({args.split} split)")
    for column in ("kind", "values", "caught", "recall"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    for kind in sorted(total, key=lambda k: -total[k]):
        caught = total[kind] - missed[kind]
        table.add_row(kind, str(total[kind]), str(caught), f"{caught / total[kind]:.3f}")
    all_values, all_missed = sum(total.values()), sum(missed.values())
    table.add_row("all", str(all_values), str(all_values - all_missed),
                  f"{1 - all_missed / all_values:.3f}")  # fmt: skip
    console.print(table)
    console.print(f"over-redaction: {over} of {plain} non-sensitive slots ({over / plain:.1%}); "
                  f"detection {ms:.1f} ms per text")  # fmt: skip
    if args.detect_only:
        return

    server = LocalLLMServer(catalog.resolve(SMOL), alias=SMOL, n_ctx=2048, n_threads=1)
    server.start()
    proxy = RecordingProxy(server.base_url)
    slm = LlamaCppChatModel(model=SMOL, temperature=0.0, max_tokens=48, n_ctx=2048, n_threads=1)
    try:
        wire = the_wire(slm, proxy, samples)
        kept = restore(slm, server.base_url, samples, args.restore)
    finally:
        proxy.close()
        server.stop()

    table = Table(title="the wire: values that reached the LLM server's proxy")
    for column in ("kind", "values sent in", "reached the proxy"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    for kind in sorted(wire["total"], key=lambda k: -wire["total"][k]):
        table.add_row(kind, str(wire["total"][kind]), str(wire["reached"][kind]))
    table.add_row("all", str(sum(wire["total"].values())), str(sum(wire["reached"].values())))
    console.print(table)
    console.print(f"conversations: {dict(wire['shapes'])}")
    for example in wire["examples"][:12]:
        console.print(f"[dim]reached: {example}[/]")
    on, off = kept["redact"], kept["allow"]
    console.print(
        f"restore: answers containing the value, privacy on {on['hits']}/{kept['n']}, "
        f"off {off['hits']}/{kept['n']}; seconds per request on {on['seconds']:.2f}, "
        f"off {off['seconds']:.2f} (+{on['seconds'] - off['seconds']:.2f} s)"
    )


if __name__ == "__main__":
    main()
