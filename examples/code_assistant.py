"""A code assistant on the cascade: the SLM answers first; code that fails the prompt's
examples goes to the LLM.

    python examples/code_assistant.py

The confidence signal is a task check: the answer's code is run (in a separate
process) against the ``>>>`` examples given in the question.
"""

from __future__ import annotations

from langchain_core.messages import HumanMessage

from collab.chat_model import CollabChatModel
from collab.models.defaults import make_llm, make_slm
from collab.policy import CascadeSettings, Policy
from collab.trace import Trace

QUESTIONS = [
    'def add(a, b):\n    """Return a + b.\n    >>> add(2, 3)\n    5\n    """\n',
    'def is_palindrome(s):\n    """Whether s reads the same backwards, ignoring case.\n'
    '    >>> is_palindrome("Level")\n    True\n    >>> is_palindrome("abc")\n    False\n    """\n',
]


def main() -> None:
    policy = Policy(
        default="cascade", cascade=CascadeSettings(signal="code_examples", threshold=1.0)
    )
    chat = CollabChatModel(
        slm=make_slm(temperature=0.0, max_tokens=128),
        llm=make_llm(announce=print, temperature=0.0, max_tokens=128),
        policy=policy,
    )
    for question in QUESTIONS:
        prompt = f"Complete this Python function. Reply with the code only.\n\n{question}"
        reply = chat.invoke([HumanMessage(prompt)])
        trace = Trace.from_metadata(reply.response_metadata)
        who = ", ".join(f"{c.model} ({c.location})" for c in trace.calls)
        print(f"\n{question.splitlines()[0]}\n{reply.content}")
        print(f"-> {trace.strategy}; models: {who}; escalations: {trace.escalations or 'none'}")


if __name__ == "__main__":
    main()
