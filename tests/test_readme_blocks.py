"""Every code block of the READMEs, and every example, runs twice in a row against a running suite
(fresh names each time); a failure prints the suite's message and exits non-zero.

The blocks are read from the READMEs themselves. A block that must not run here (it starts the
suite, or installs a package) has an HTML comment `<!-- not run: why -->` on the line above it.
"""

import os
import pathlib
import re
import subprocess
import sys

import pytest

from testkit.ports import free_ports

ROOT = pathlib.Path(__file__).resolve().parents[1]
READMES = (ROOT / "README.md", ROOT / "clients" / "python" / "README.md")
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
NOT_RUN = "<!-- not run:"
COMMANDS = {"python": [sys.executable, "-c"], "bash": ["bash", "-e", "-u", "-o", "pipefail", "-c"]}
RUN_TIMEOUT_SECONDS = 60


def code_blocks(path: pathlib.Path):
    """(language, code, line number, marked not to run) for each fenced block of a Markdown file."""
    text = path.read_text()
    for match in FENCE.finditer(text):
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        yield match.group(1), match.group(2), text.count("\n", 0, match.start()) + 1, before.startswith(NOT_RUN)


def _runnable():
    for readme in READMES:
        for language, code, line, not_run in code_blocks(readme):
            if language in COMMANDS and not not_run:
                yield pytest.param(language, code, id=f"{readme.relative_to(ROOT)}:{line}")


RUNNABLE = list(_runnable())


def test_every_block_says_its_language_and_the_readmes_have_runnable_ones():
    for readme in READMES:
        for language, _, line, _ in code_blocks(readme):
            assert language, f"{readme.relative_to(ROOT)}:{line}: a code block without a language"
    # The first chat in Python and from the shell, grpcurl, the two blocks of the client's README.
    assert len(RUNNABLE) >= 5


def _run(command: list[str], environ: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, env=environ, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_SECONDS, stdin=subprocess.DEVNULL)


@pytest.fixture
def environ(suite, provider_server):
    """What a user's shell has after `make run`: the suite's address and a stand-in LLM."""
    return {**{name: value for name, value in os.environ.items() if not name.startswith("LLMCHATLINKER_")},
            "LLMCHATLINKER_ORCHESTRATOR_ADDR": suite.orchestrator, "LLM_ENDPOINT": provider_server.openai_url}


@pytest.mark.parametrize(("language", "code"), RUNNABLE)
def test_readme_block_runs_twice(language, code, environ):
    for attempt in (1, 2):
        run = _run([*COMMANDS[language], code], environ)
        assert run.returncode == 0, f"run {attempt} exited {run.returncode}:\n{run.stdout}\n{run.stderr}"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_example_runs_twice(example, environ):
    for attempt in (1, 2):
        run = _run([sys.executable, str(example)], environ)
        assert run.returncode == 0, f"run {attempt} exited {run.returncode}:\n{run.stdout}\n{run.stderr}"


def _first_python_block() -> str:
    return next(code for language, code, _, not_run in code_blocks(READMES[0]) if language == "python" and not not_run)


@pytest.mark.parametrize("command", [
    pytest.param(lambda: [sys.executable, "-c", _first_python_block()], id="README.md python"),
    *[pytest.param(lambda example=example: [sys.executable, str(example)], id=example.name) for example in EXAMPLES],
])
def test_a_provider_out_of_reach_prints_the_suites_message_and_exits_non_zero(command, environ):
    closed_port = free_ports(1)[0]
    run = _run(command(), {**environ, "LLM_ENDPOINT": f"http://127.0.0.1:{closed_port}/v1/chat/completions"})
    assert run.returncode != 0, run.stdout
    # Unreachable; or skipped, when its breaker opened (five failed tries) while it was waited out.
    assert "UNAVAILABLE" in run.stderr, run.stderr
    assert "(PROVIDER_UNREACHABLE)" in run.stderr or "(PROVIDER_CIRCUIT_OPEN)" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and "KeyError" not in run.stderr, run.stderr


def test_a_suite_out_of_reach_is_named_with_its_address(environ):
    closed = f"127.0.0.1:{free_ports(1)[0]}"
    run = _run([sys.executable, str(EXAMPLES[0])], {**environ, "LLMCHATLINKER_ORCHESTRATOR_ADDR": closed})
    assert run.returncode != 0
    assert f"cannot reach the suite at {closed}: is `make run` running? (SUITE_UNREACHABLE)" in run.stderr
    assert "Traceback" not in run.stderr
