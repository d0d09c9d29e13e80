"""A whole suite for tests that start it: its environment on free ports, and what a running one is."""

import collections
import contextlib
import dataclasses
import os
import pathlib
import secrets
import uuid
from collections.abc import Iterator

from services import launcher
from testkit.backends import (
    AMQP_URL, POSTGRES_URL, TEST_KEY_ENCRYPTION_KEY, delete_queues, drop_schemas, require_postgres, require_rabbitmq,
)
from testkit.ports import free_ports


def suite_environment(data_dir: pathlib.Path | None = None, **extra: str) -> dict[str, str]:
    """This process's environment without LLMCHATLINKER_ variables (the suite's defaults rule),
    each service on a free port of its own, SQLite files under `data_dir`, an internal token of its
    own (rather than one `up` makes up: a second orchestrator started beside the suite must call
    its units with the same), and `extra` on top. On PostgreSQL it also gives the llm_unit the
    key-encryption key a deployment would."""
    environ = {name: value for name, value in os.environ.items() if not name.startswith("LLMCHATLINKER_")}
    environ["LLMCHATLINKER_INTERNAL_TOKEN"] = secrets.token_hex(32)
    for service, port in zip(launcher.SERVICES, free_ports(len(launcher.SERVICES))):
        environ[launcher.variable(service, "PORT")] = str(port)
    if data_dir is not None:
        environ["LLMCHATLINKER_DATA_DIR"] = str(data_dir)
    if "LLMCHATLINKER_DATABASE_URL" in extra:
        environ["LLMCHATLINKER_LLM_UNIT_KEY_ENCRYPTION_KEY"] = TEST_KEY_ENCRYPTION_KEY
    return {**environ, **extra}


@contextlib.contextmanager
def on_rabbitmq_and_postgres(prefix: str, data_dir: pathlib.Path, **extra: str) -> Iterator[tuple[dict[str, str], str]]:
    """suite_environment on the real RabbitMQ and PostgreSQL, with a queue and schemas of its own
    (named after `prefix`), and `extra` on top; yields (environment, queue) and deletes the queues
    and schemas after."""
    require_rabbitmq()
    require_postgres()
    session = uuid.uuid4().hex[:10]
    queue = f"{prefix}_{session}_instruction_queue"
    schemas = {unit: f"{prefix}_{session}_{unit}" for unit in launcher.UNITS}
    environ = suite_environment(data_dir, **{
        "LLMCHATLINKER_AMQP_URL": AMQP_URL,
        "LLMCHATLINKER_QUEUE": queue,
        "LLMCHATLINKER_DATABASE_URL": POSTGRES_URL,
        **{launcher.variable(unit, "DATABASE_SCHEMA"): schema for unit, schema in schemas.items()},
        **extra,
    })
    try:
        yield environ, queue
    finally:
        queues = dict.fromkeys([queue, environ["LLMCHATLINKER_QUEUE"]])
        delete_queues(AMQP_URL, [name + suffix for name in queues for suffix in ("", ".dead")])
        drop_schemas(POSTGRES_URL, schemas.values())


@dataclasses.dataclass(frozen=True)
class RunningSuite:
    """A started suite: its environment, its last lines of output and, on RabbitMQ, its queue."""

    environ: dict[str, str]
    output: collections.deque
    amqp_url: str | None = None
    queue: str | None = None

    @property
    def orchestrator(self) -> str:
        return launcher.address("orchestrator", self.environ)
