"""The README's first chat (examples/first_chat.py) completes against a running suite."""

import os
import pathlib
import subprocess
import sys

EXAMPLE = pathlib.Path(__file__).resolve().parents[3] / "examples" / "first_chat.py"


def test_first_chat_example_streams_a_reply(suite, llm_server):
    env = dict(os.environ, LLMCHATLINKER_ORCHESTRATOR_ADDR=suite.orchestrator, LLM_ENDPOINT=llm_server.openai_url)
    run = subprocess.run([sys.executable, str(EXAMPLE)], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    streamed, status_line = run.stdout.strip().splitlines()
    assert streamed == "echo: What is the longest river in the world?"
    assert status_line.startswith("success ")
