"""A privacy-preserving summary: personal data is replaced by placeholders before the LLM
sees the document, and put back locally in the summary.

    python examples/private_summary.py
"""

from __future__ import annotations

import json

from langchain_core.messages import HumanMessage

from collab.chat_model import CollabChatModel
from collab.models.defaults import make_llm, make_slm
from collab.policy import Policy
from collab.trace import Trace

DOCUMENT = """Support ticket 4471.
Customer: Maria Rossi, maria.rossi@example.org, phone +39 347 123 4567.
She was charged twice for her March subscription on card 4111 1111 1111 1111
and asks for the duplicate charge to be refunded to IBAN DE89 3704 0044 0532 0130 00."""
PLANTED = ["Maria Rossi", "maria.rossi@example.org", "+39 347 123 4567",
           "4111 1111 1111 1111", "DE89 3704 0044 0532 0130 00"]  # fmt: skip


def main() -> None:
    chat = CollabChatModel(
        slm=make_slm(temperature=0.0, max_tokens=96),
        llm=make_llm(announce=print, temperature=0.0, max_tokens=96),
        policy=Policy(default="llm_only", privacy="redact"),
    )
    reply = chat.invoke([HumanMessage(f"Summarise this ticket in two sentences:\n\n{DOCUMENT}")])
    trace = Trace.from_metadata(reply.response_metadata)
    # the audit: every request that left the machine, as the bytes sent
    bodies = [json.loads(r["body"]) for r in trace.extra["remote_audit"] if r["body"]]
    sent = "\n".join(str(m["content"]) for body in bodies for m in body.get("messages", []))
    print("what the LLM received:\n" + sent)
    print("\nsummary (restored locally):\n" + str(reply.content))
    leaked = [p for p in PLANTED if p in sent]
    print(f"\npersonal data that reached the LLM: {leaked or 'none'}")


if __name__ == "__main__":
    main()
