"""The local stand-in LLM: started on first use, same HTTP path, stopped without orphans."""

from __future__ import annotations

import os

from collab.config import Settings
from collab.models.defaults import make_llm
from collab.models.local_server import LocalServerChatModel
from tests.servers import SMOL


def test_stand_in_starts_lazily_answers_and_stops() -> None:
    messages: list[str] = []
    # n_ctx of its own: one stand-in per settings per process, and other tests start theirs
    settings = Settings(slm=SMOL, llm=SMOL, n_ctx=768, n_threads=2)
    llm = make_llm(settings, announce=messages.append, temperature=0.0, max_tokens=8)
    assert isinstance(llm, LocalServerChatModel)
    assert "stand-in" in messages[0]
    assert not llm.server.running  # nothing started yet
    result = llm.invoke("Say hi.")
    assert result.content
    assert llm.server.running and llm.base_url.startswith("http://127.0.0.1:")
    pid = llm.server.process.pid if llm.server.process else -1
    llm.server.stop()
    assert not llm.server.running
    try:
        os.kill(pid, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive
