"""kill -9 of the orchestrator process while hundreds of instructions are queued, then a restart:
every instruction gets exactly one effect and a reply."""

import json
import os
import pathlib
import signal
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[3]
COUNT = 300


def start_orchestrator(env: dict, log: pathlib.Path) -> subprocess.Popen:
    with open(log, "ab") as output:
        return subprocess.Popen([sys.executable, "-m", "services.orchestrator"], cwd=REPO,
                                env={**os.environ, **env}, stdout=output, stderr=subprocess.STDOUT)


async def test_kill_9_with_hundreds_queued_then_restart_gives_one_effect_and_a_reply_each(
        suite, amqp_url, queue_name, legacy, blocking_call, tmp_path):
    client = await blocking_call(legacy)
    ids = [await blocking_call(client.send, "USER_CREATE", {"username": f"user_{i:03d}"}, message_id=f"create-{i}")
           for i in range(COUNT)]
    env = suite.env(queue_name, amqp_url, max_in_flight=64)
    log = tmp_path / "orchestrator.log"

    first = start_orchestrator(env, log)
    try:
        await blocking_call(client.wait_for_replies, 30, 60)  # kill it mid-stream, with 64 in flight
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    answered_before_kill = len(client.replies)
    assert await blocking_call(client.message_count, queue_name) > 0, "the kill came after everything was done"

    second = start_orchestrator(env, log)
    try:
        replies = await blocking_call(client.wait, ids, timeout=100)
    finally:
        second.terminate()
        assert second.wait(30) == 0, log.read_text()[-3000:]

    for i, correlation_id in enumerate(ids):
        bodies = [json.loads(body) for body in replies[correlation_id]]
        assert all(body["status"] == "success" for body in bodies), bodies
        assert len({body["data"]["user"]["user_id"] for body in bodies}) == 1  # repeats agree
        assert bodies[0]["data"]["user"]["username"] == f"user_{i:03d}"
    users = await suite.users()
    assert sorted(user.username for user in users) == [f"user_{i:03d}" for i in range(COUNT)]
    assert answered_before_kill < COUNT
