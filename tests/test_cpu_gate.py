"""The CPU gate: llama.cpp computations of collab's processes take the cores in turns."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from collab.models import cpu_gate

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


INSTALLED = """
from llama_cpp._internals import LlamaContext
from collab.models import cpu_gate
from collab.models.llamacpp import LlamaCppChatModel
model = LlamaCppChatModel(model="smollm2-135m", temperature=0.0, max_tokens=4)
print(bool(str(model.invoke("Hi").content).strip()), hasattr(LlamaContext.decode, "__wrapped__"),
      cpu_gate.install() is not None)
"""


def test_the_gate_is_off_unless_asked_for_and_wraps_every_decode_when_on() -> None:
    for setting, expected in (("true", "True True True"), ("false", "True False False")):
        env = {**os.environ, "COLLAB_CPU_GATE": setting}
        out = subprocess.run([sys.executable, "-c", INSTALLED], env=env, capture_output=True,
                             text=True, check=True)  # fmt: skip
        assert out.stdout.strip().splitlines()[-1] == expected, (setting, out.stderr[-500:])
