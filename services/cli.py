"""The llmchatlinker command: `up` starts the whole suite, `serve SERVICE` runs one service, `call`
runs one instruction from the shell, `keys` makes, lists and revokes caller keys, `status` shows
how the suite is doing."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import signal
import sys
import threading

from services import admin, call, launcher, status

_output_lock = threading.Lock()


def _write(line: str) -> None:
    with _output_lock:
        print(line, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmchatlinker",
        description="Run LLMChatLinker. Configuration comes from LLMCHATLINKER_* environment variables "
                    "(see the README's configuration table).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser(
        "up", help="start all five services and wait until each is SERVING; Ctrl-C stops them",
        description="Start the orchestrator and the four units as child processes: SQLite files under "
                    "LLMCHATLINKER_DATA_DIR (default ./var/data) and the in-process queue, or PostgreSQL "
                    "(LLMCHATLINKER_DATABASE_URL) and RabbitMQ (LLMCHATLINKER_AMQP_URL) when set.")
    up.add_argument("--with-test-llm", action="store_true",
                    help="also start the test kit's stand-in LLM server (for demos)")
    up.add_argument("--test-llm-port", type=int, default=launcher.DEFAULT_TEST_LLM_PORT, metavar="PORT",
                    help="port of the stand-in LLM server (default %(default)s)")
    up.add_argument("--ready-timeout", type=float, default=launcher.READY_TIMEOUT_SECONDS, metavar="SECONDS",
                    help="how long to wait for every service to be SERVING (default %(default)s)")
    serve = commands.add_parser("serve", help="run one service in the foreground (what containers run)")
    serve.add_argument("service", choices=launcher.SERVICES)
    call.add_parser(commands)
    admin.add_parser(commands)
    status.add_parser(commands)
    return parser


def version() -> str:
    """The installed suite's version (pyproject.toml's)."""
    try:
        return importlib.metadata.version("llmchatlinker-suite")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def up(args: argparse.Namespace) -> int:
    environ = dict(os.environ)
    stop_requested = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop_requested.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)

    suite = launcher.Suite(environ, _write, test_llm_port=args.test_llm_port if args.with_test_llm else None)
    _write(f"llmchatlinker: starting the suite ({launcher.describe_storage(environ)})")
    try:
        suite.start()
        suite.wait_until_ready(args.ready_timeout, stop_requested)
        if not stop_requested.is_set():
            _print_ready(suite)
        while not stop_requested.wait(0.2):
            suite.raise_if_one_died()
    except launcher.PortsInUse as error:
        _write(f"llmchatlinker: {error}")
        return 1
    except (launcher.ServiceDied, TimeoutError) as error:
        _write(f"llmchatlinker: {error}; stopping the others")
        suite.stop()
        return 1
    except BaseException:
        suite.stop()
        raise
    _write("llmchatlinker: stopping")
    suite.stop()
    _write("llmchatlinker: stopped")
    return 0


def _print_ready(suite: launcher.Suite) -> None:
    lines = ["llmchatlinker: the suite is up"]
    for child in suite.children:
        role = {"orchestrator": "gRPC front door", launcher.TEST_LLM: "stand-in LLM"}.get(child.name, "")
        lines.append(f"  {child.name:<13} {child.address:<22} pid {child.process.pid:<8} {role}".rstrip())
    front_door = next((c.address for c in suite.children if c.name == "orchestrator"), None)
    if front_door:
        lines.append(f"Clients connect to {front_door} (LLMCHATLINKER_ORCHESTRATOR_ADDR). Ctrl-C stops the suite.")
    for child in suite.children:
        if child.name == launcher.TEST_LLM:
            lines.append(f"Stand-in LLM (OpenAI-compatible): http://{child.address}/v1/chat/completions")
    _write("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        launcher.exec_service(args.service, os.environ)
    if args.command == "call":
        sys.exit(call.run(args))
    if args.command == "keys":
        sys.exit(admin.run(args))
    if args.command == "status":
        sys.exit(status.run(args, os.environ, version()))
    sys.exit(up(args))


if __name__ == "__main__":
    main()
