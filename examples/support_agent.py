"""A customer-support agent: the local SLM calls the tools, the remote LLM checks refunds.

    python examples/support_agent.py

Runs offline on the configured models (``collab.config``): the SLM in-process,
the LLM behind an OpenAI-compatible server (a local stand-in when
``COLLAB_LLM_BASE_URL`` is unset). Refund calls are marked ``verify``: the LLM
approves each one before it runs, and reviews the SLM's reply to the customer.
"""

from __future__ import annotations

from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver

from collab.agents import build_graph
from collab.models.defaults import make_llm, make_slm
from collab.policy import Policy
from collab.tools import make_tool

ORDERS = {"A-1001": {"item": "kettle", "paid": 39.0, "status": "delivered"}}
REFUNDS: list[str] = []


def lookup_order(order_id: str) -> str:
    """Look up an order by its id, such as A-1001."""
    order = ORDERS.get(order_id.strip().upper())
    return f"{order_id}: {order}" if order else f"no order {order_id}"


def refund_order(order_id: str, reason: str) -> str:
    """Refund an order in full, giving the customer's reason."""
    REFUNDS.append(order_id)
    return f"refund of {order_id} sent ({reason})"


def main() -> None:
    slm = make_slm(temperature=0.0, max_tokens=96)
    llm = make_llm(announce=print, temperature=0.0, max_tokens=96)
    graph = build_graph(
        slm,
        llm,
        tools=[lookup_order, make_tool(refund_order, verify=True)],
        tool_choice="any",  # each turn starts with a tool call
        policy=Policy(default="draft_verify"),  # the LLM reviews the SLM's final reply
        checkpointer=InMemorySaver(),
    )
    config = {"configurable": {"thread_id": "support-1"}}
    for question in (
        "What is the status of order A-1001?",
        "The kettle of order A-1001 arrived broken. Please refund it.",
    ):
        print(f"\ncustomer: {question}")
        for mode, item in graph.stream(
            {"messages": [HumanMessage(question)]}, config, stream_mode=["custom", "updates"]
        ):
            if mode == "custom" and item["event"] in ("tool_calls", "verdict", "escalation"):
                print(f"  [{item['event']}] {item}")
        messages = graph.get_state(config).values["messages"]
        turn = messages[messages.index(next(m for m in reversed(messages) if m.type == "human")) :]
        for m in turn:
            if isinstance(m, AIMessage) and m.tool_calls:
                print(f"  SLM called: {[(c['name'], c['args']) for c in m.tool_calls]}")
            if isinstance(m, ToolMessage):
                print(f"  tool said: {m.content}")
        print(f"agent: {messages[-1].content}")
    print(f"\nrefunds actually sent: {REFUNDS or 'none'}")


if __name__ == "__main__":
    main()
