"""A LangChain app that uses collab through the OpenAI protocol: ``ChatOpenAI(base_url=...)``.

    python examples/langchain_client.py

Starts ``collab serve`` in this process on a free local port (in production,
run ``collab serve`` and point ``base_url`` at it), then uses it from plain
LangChain (a prompt | model | parser chain, streaming) and shows, through the
openai SDK, the attribution collab adds to each answer.
"""

from __future__ import annotations

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_openai import ChatOpenAI
from openai import OpenAI

from collab.server import BackgroundServer, create_app, default_workflows


def main() -> None:
    server = BackgroundServer(create_app(default_workflows(), api_key="local-secret"))
    base_url = f"{server.url}/v1"
    chat = ChatOpenAI(base_url=base_url, api_key="local-secret", model="collab-auto",
                      max_tokens=64, temperature=0)  # fmt: skip
    chain = (
        ChatPromptTemplate.from_messages(
            [("system", "You are a concise assistant."), ("user", "{question}")]
        )
        | chat
        | StrOutputParser()
    )
    print("chain:", chain.invoke({"question": "What is the capital of Italy?"}))
    print("stream: ", end="")
    for piece in chat.stream("Name three colours."):
        print(piece.content, end="", flush=True)
    print()
    reply = chat.invoke("Say hi.")
    print("answer:", reply.content, "| usage:", reply.usage_metadata)
    # ChatOpenAI keeps only OpenAI's fields; the openai SDK shows collab's attribution too.
    client = OpenAI(base_url=base_url, api_key="local-secret")
    done = client.chat.completions.create(
        model="collab-auto", messages=[{"role": "user", "content": "Say hi."}], max_tokens=16
    )
    collab = (done.model_extra or {})["collab"]
    print(f"answered by {collab['answered_by']}, strategy {collab['strategy']}, "
          f"saved {collab['saved_usd'] * 1e6:.1f} µ$ against LLM-only")  # fmt: skip
    server.stop()


if __name__ == "__main__":
    main()
