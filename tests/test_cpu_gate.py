"""The CPU gate: llama.cpp computations of collab's processes take the cores in turns."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

from collab.models import cpu_gate
from collab.models.llamacpp import LlamaCppChatModel

TRY_LOCK = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("free")
except BlockingIOError:
    print("held")
"""


def other_process_finds(path: Path) -> str:
    out = subprocess.run([sys.executable, "-c", TRY_LOCK, str(path)], capture_output=True,
                         text=True, check=True)  # fmt: skip
    return out.stdout.strip()


def test_the_gate_is_held_by_one_process_at_a_time_and_reentrant(tmp_path: Path) -> None:
    gate = cpu_gate.CpuGate(tmp_path / "cpu.lock")
    with gate.held():
        with gate.held():  # a decode inside a gated call does not wait for itself
            assert other_process_finds(gate.path) == "held"
        assert other_process_finds(gate.path) == "held"
    assert other_process_finds(gate.path) == "free"


def test_a_model_waits_while_another_process_computes(slm: LlamaCppChatModel) -> None:
    from llama_cpp._internals import LlamaContext

    slm.invoke("Hi")  # a model is loaded: the gate is in place
    gate = cpu_gate.install()
    assert gate is not None and hasattr(LlamaContext.decode, "__wrapped__")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR);"
         "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.readline()",
         str(gate.path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    answers: list[str] = []
    asking = threading.Thread(target=lambda: answers.append(str(slm.invoke("Hi").content)))
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        asking.start()
        asking.join(timeout=3)
        assert asking.is_alive() and not answers  # its first decode waits for the gate
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=30)
    asking.join(timeout=120)
    assert answers and answers[0].strip()  # and runs once the other process is done


def test_the_gate_can_be_turned_off() -> None:
    code = "from collab.models import cpu_gate; print(cpu_gate.install())"
    env = {**os.environ, "COLLAB_CPU_GATE": "false"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert out.stdout.strip() == "None"
