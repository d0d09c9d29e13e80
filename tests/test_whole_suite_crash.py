"""The whole suite killed with hundreds of legacy instructions queued, on RabbitMQ and PostgreSQL,
then started again: every instruction is answered, with success, and takes effect exactly once; no
instruction gets two different answers. Two ways an operator kills it:
- every process at once with SIGKILL (`docker compose kill`, a node losing power);
- `kill -9` of the launcher's process group: the launcher dies, and each service, tethered to it,
  gets SIGTERM at that moment and stops on its own (the units may go first, under the
  orchestrator's feet)."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from services import healthcheck, launcher
from testkit.backends import AMQP_URL
from testkit.suite import on_rabbitmq_and_postgres
from testkit.legacy_amqp import LegacyAmqpClient

COUNT = 300
READY_SECONDS = 90


class Launched:
    """`llmchatlinker up` as a child process; `pids()` are its services' process ids."""

    def __init__(self, environ: dict[str, str]):
        self.environ = environ
        self.process = subprocess.Popen([sys.executable, "-m", "services.cli", "up"], env=environ,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, errors="replace", process_group=0)
        self.output: list[str] = []
        threading.Thread(target=lambda: self.output.extend(self.process.stdout), daemon=True).start()

    def wait_until_serving(self) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while not all(healthcheck.is_serving(launcher.address(s, self.environ), timeout=1) for s in launcher.SERVICES):
            assert self.process.poll() is None and time.monotonic() < deadline, "".join(self.output[-80:])
            time.sleep(0.2)

    def pids(self) -> list[int]:
        """The services' pids, from the ready lines (`  user_unit  127.0.0.1:50052  pid 1234`)."""
        deadline = time.monotonic() + 30
        while True:
            found = [int(line.split(" pid ")[1].split()[0]) for line in list(self.output) if " pid " in line]
            if len(found) >= len(launcher.SERVICES) or time.monotonic() > deadline:
                return found
            time.sleep(0.1)

    def kill(self, how: str) -> None:
        if how == "launcher-group":
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            self._wait_gone(self.pids())  # they stop on their own, after SIGTERM from their tether
            return
        for pid in [self.process.pid, *self.pids()]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(10)
        self._wait_gone(self.pids())

    @staticmethod
    def _wait_gone(pids: list[int]) -> None:
        deadline = time.monotonic() + 60
        while any(os.path.exists(f"/proc/{pid}") and "zombie" not in _state(pid) for pid in pids):
            assert time.monotonic() < deadline, "a service outlived its launcher"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(60)


@pytest.fixture
def crash_environment(tmp_path):
    with on_rabbitmq_and_postgres("crash", tmp_path / "data") as (environ, _queue):
        yield environ


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/status") as status:
            return status.read()
    except OSError:
        return "zombie"


@pytest.mark.parametrize("how", ["sigkill-all", "launcher-group"])
def test_killing_the_whole_suite_mid_run_loses_nothing_and_doubles_nothing(crash_environment, how):
    first = Launched(crash_environment)
    try:
        first.wait_until_serving()
        client = LegacyAmqpClient(AMQP_URL, crash_environment["LLMCHATLINKER_QUEUE"])
        # Half with a message_id (the instruction's id), half with only a correlation_id.
        sent = {client.send("USER_CREATE", {"username": f"crash_{i:03d}"},
                            message_id=f"crash-{i}" if i % 2 else None): f"crash_{i:03d}" for i in range(COUNT)}
        while len(client.replies) < 40:
            client.pump(0.01)
        first.kill(how)
    finally:
        first.stop()
    answered_before = len(client.replies)
    assert answered_before < COUNT, "the kill came after everything was done"

    second = Launched(crash_environment)
    try:
        second.wait_until_serving()
        client.wait(list(sent), timeout=180)
        client.pump(1)  # late duplicates, if any, would arrive now
        users = LegacyAmqpClient(AMQP_URL, crash_environment["LLMCHATLINKER_QUEUE"])
        listed = users.call("USER_LIST", {})
        users.close()
    finally:
        second.stop()
        client.close()

    for correlation_id, username in sent.items():
        replies = client.replies[correlation_id]
        assert all(reply["status"] == "success" for reply in replies), (username, replies)
        assert {reply["data"]["user"]["user_id"] for reply in replies} == {replies[0]["data"]["user"]["user_id"]}
        assert replies[0]["data"]["user"]["username"] == username
    assert sorted(user["username"] for user in listed["data"]["users"]) == sorted(sent.values())
