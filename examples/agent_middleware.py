"""A LangChain ``create_agent`` app with collab as middleware: the SLM and the LLM
share the agent's model calls, and the customer's e-mail never reaches the LLM while
the tool still gets it.

    python examples/agent_middleware.py
"""

from __future__ import annotations

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool

from collab.chat_model import CollabChatModel
from collab.middleware import CollabMiddleware, PrivacyMiddleware
from collab.models.defaults import make_llm, make_slm
from collab.policy import Policy

ORDERS = {"maria.rossi@example.org": ["#4471 headphones, shipped", "#4480 charger, packed"]}


@tool
def find_orders(email: str) -> str:
    """The open orders of the customer with this e-mail address."""
    print(f"[tool] find_orders(email={email!r})")
    return "; ".join(ORDERS.get(email.strip().lower(), [])) or "no orders"


def main() -> None:
    slm, llm = make_slm(temperature=0.0, max_tokens=64), make_llm(announce=print, temperature=0.0)
    pair = CollabChatModel(slm=slm, llm=llm, policy=Policy(default="slm_only"))
    agent = create_agent(
        model=llm,
        tools=[find_orders],
        middleware=[PrivacyMiddleware(), CollabMiddleware(pair)],
        system_prompt="You help customers with their orders. Use the tools.",
    )
    question = 'Call find_orders with {"email": "maria.rossi@example.org"}'
    result = agent.invoke({"messages": [("user", question)]}, {"recursion_limit": 8})
    for message in result["messages"]:
        if isinstance(message, ToolMessage):
            print(f"[tool result] {message.content}")
        elif isinstance(message, AIMessage):
            trace = message.response_metadata.get("collab", {})
            who = [f"{c['model']} ({c['location']})" for c in trace.get("calls", [])]
            calls = [f"{c['name']}({c['args']})" for c in message.tool_calls]
            print(f"[model turn] {trace.get('strategy')} by {who}: {calls or message.content!r}")
    print(f"answer: {result['messages'][-1].content}")


if __name__ == "__main__":
    main()
