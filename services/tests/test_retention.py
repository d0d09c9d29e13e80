"""Bounded storage (services.common.retention), on each unit's real schema, SQLite and PostgreSQL:
ledger ids older than the retention are forgotten (a replay then runs again), long-deleted rows
are purged with what hangs off them, and everything younger or live stays."""

import datetime
import time

import grpc
import pytest
import sqlalchemy as sa

from llmchatlinker.chat.v1 import chat_service_pb2 as chat_pb
from llmchatlinker.chat.v1 import chat_service_pb2_grpc as chat_grpc
from llmchatlinker.db.v1 import db_service_pb2 as db_pb
from llmchatlinker.db.v1 import db_service_pb2_grpc as db_grpc
from llmchatlinker.llm.v1 import llm_service_pb2 as llm_pb
from llmchatlinker.llm.v1 import llm_service_pb2_grpc as llm_grpc
from llmchatlinker.user.v1 import user_service_pb2 as user_pb
from llmchatlinker.user.v1 import user_service_pb2_grpc as user_grpc
from services.common import retention
from services.common.config import Retention
from services.common.db import Database, utcnow
from services.tests.test_unit_servers import _module, running

DAY = datetime.timedelta(days=1)
# What the pruner sees as "now" to find today's rows past a 7-day ledger and a 30-day deletion.
LATER = {"ledger": 8 * DAY, "deleted": 31 * DAY}


def _pruner(unit: str, database_target, **settings) -> retention.Pruner:
    database = Database(database_target.url, database_target.schema)
    return retention.Pruner(database, _module(unit, "store").RETENTION_RULES, Retention(**settings))


def _count(database_target, table: str, where: str = "1=1") -> int:
    database = Database(database_target.url, database_target.schema)
    try:
        with database.reading() as connection:
            return connection.execute(sa.text(f"SELECT count(*) FROM {table} WHERE {where}")).scalar_one()
    finally:
        database.dispose()


def _age(database_target, table: str, column: str, by: datetime.timedelta) -> None:
    """Moves every row's `column` back by `by`, as if written that long ago."""
    database = Database(database_target.url, database_target.schema)
    try:
        with database.writing() as connection:
            table_clause = sa.table(table, sa.column(column, sa.DateTime(timezone=True)))
            for (value,) in connection.execute(sa.select(table_clause.c[column]).distinct()).all():
                if value is not None:
                    connection.execute(sa.update(table_clause).where(table_clause.c[column] == value)
                                       .values({column: value - by}))
    finally:
        database.dispose()


async def test_a_request_id_past_the_retention_runs_again(database_target):
    async with running("user_unit", database_target) as server, \
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        users = user_grpc.UserServiceStub(channel)
        first = await users.CreateUser(user_pb.CreateUserRequest(request_id="r-1", username="alice"), timeout=10)
        replayed = await users.CreateUser(user_pb.CreateUserRequest(request_id="r-1", username="alice"), timeout=10)
        assert replayed.user.user_id == first.user.user_id  # within the retention: the stored answer

        pruner = _pruner("user_unit", database_target)
        assert pruner.prune(now=utcnow() + 6 * DAY) == {}  # younger than 7 days: kept
        assert pruner.prune(now=utcnow() + LATER["ledger"]) == {"processed_requests": 1}

        with pytest.raises(grpc.aio.AioRpcError) as again:  # forgotten: it runs again, and meets alice
            await users.CreateUser(user_pb.CreateUserRequest(request_id="r-1", username="alice"), timeout=10)
        assert again.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_users_deleted_long_ago_are_purged_and_live_ones_kept(database_target):
    async with running("user_unit", database_target) as server, \
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        users = user_grpc.UserServiceStub(channel)
        gone = (await users.CreateUser(user_pb.CreateUserRequest(username="gone"), timeout=10)).user
        kept = (await users.CreateUser(user_pb.CreateUserRequest(username="kept"), timeout=10)).user
        await users.DeleteUser(user_pb.DeleteUserRequest(user_id=gone.user_id), timeout=10)

        pruner = _pruner("user_unit", database_target)
        assert "users" not in pruner.prune(now=utcnow() + 29 * DAY)
        assert pruner.prune(now=utcnow() + LATER["deleted"])["users"] == 1

        assert _count(database_target, "users", f"user_id = '{gone.user_id}'") == 0
        assert (await users.GetUser(user_pb.GetUserRequest(user_id=kept.user_id), timeout=10)).user.username == "kept"


async def test_a_chat_deleted_long_ago_goes_with_its_messages_and_members(database_target):
    async with running("chat_unit", database_target) as server, \
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        chats = chat_grpc.ChatServiceStub(channel)
        ids = []
        for title in ("gone", "kept"):
            chat = (await chats.CreateChat(chat_pb.CreateChatRequest(title=title, user_ids=["u1", "u2"]),
                                           timeout=10)).chat
            message = chat_pb.NewMessage(user_id="u1", content="hello", role=chat_pb.MESSAGE_ROLE_USER)
            await chats.AppendMessages(chat_pb.AppendMessagesRequest(chat_id=chat.chat_id, messages=[message] * 3),
                                       timeout=10)
            ids.append(chat.chat_id)
        gone, kept = ids
        await chats.DeleteChat(chat_pb.DeleteChatRequest(chat_id=gone), timeout=10)

        deleted = _pruner("chat_unit", database_target).prune(now=utcnow() + LATER["deleted"])

        assert deleted["chats"] == 1
        assert _count(database_target, "messages", f"chat_id = '{gone}'") == 0
        assert _count(database_target, "chats", f"chat_id = '{kept}'") == 1
        assert _count(database_target, "messages", f"chat_id = '{kept}'") == 3
        assert _count(database_target, "chat_members") == 2  # the kept chat's two


async def test_results_and_records_past_their_retention_are_pruned(database_target):
    async with running("db_unit", database_target) as server, \
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        ledger = db_grpc.RecordServiceStub(channel)
        await ledger.PutResult(db_pb.PutResultRequest(instruction_id="old", result=b"first"), timeout=10)
        await ledger.CreateRecord(db_pb.CreateRecordRequest(user_id="u1", instruction="CHAT_CREATE",
                                                            instruction_id="old", outcome="OK"), timeout=10)
        await ledger.DeleteRecords(db_pb.DeleteRecordsRequest(user_id="u1"), timeout=10)

        deleted = _pruner("db_unit", database_target).prune(now=utcnow() + LATER["deleted"])

        assert deleted == {"results": 1, "records": 1}
        # The id is free again: a second run's result is stored, not the forgotten first one.
        stored = await ledger.PutResult(db_pb.PutResultRequest(instruction_id="old", result=b"second"), timeout=10)
        assert (stored.result, stored.already_stored) == (b"second", False)


async def test_a_provider_deleted_long_ago_goes_with_its_key_and_models(database_target):
    async with running("llm_unit", database_target) as server, \
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        llms = llm_grpc.LlmServiceStub(channel)
        provider = (await llms.CreateProvider(llm_pb.CreateProviderRequest(
            name="acme", api_endpoint="http://127.0.0.1:9/v1/chat/completions", kind=llm_pb.PROVIDER_KIND_OPENAI,
            api_key="sk-canary"), timeout=10)).provider
        await llms.CreateLlm(llm_pb.CreateLlmRequest(provider_id=provider.provider_id, name="m"), timeout=10)
        await llms.DeleteProvider(llm_pb.DeleteProviderRequest(provider_id=provider.provider_id), timeout=10)

        deleted = _pruner("llm_unit", database_target).prune(now=utcnow() + LATER["deleted"])

        assert deleted["providers"] == 1 and deleted["llms"] == 1
        assert _count(database_target, "providers") == 0 and _count(database_target, "llms") == 0


def test_zero_days_keeps_everything(database_target):
    database = Database(database_target.url, database_target.schema)
    try:
        database.migrate(_module("db_unit", "server").MIGRATIONS, _module("db_unit", "store").metadata)
        with database.writing() as connection:
            connection.execute(sa.text("INSERT INTO results (instruction_id, result, created_at) VALUES ('a', '', :t)"),
                               {"t": utcnow() - 400 * DAY})
    finally:
        database.dispose()

    pruner = _pruner("db_unit", database_target, ledger_days=0, deleted_days=0)

    assert pruner.prune() == {}
    assert _count(database_target, "results") == 1


def test_pruning_goes_in_batches_until_nothing_old_is_left(database_target, monkeypatch):
    monkeypatch.setattr(retention, "BATCH_ROWS", 7)
    database = Database(database_target.url, database_target.schema)
    try:
        database.migrate(_module("db_unit", "server").MIGRATIONS, _module("db_unit", "store").metadata)
        insert = sa.text("INSERT INTO results (instruction_id, result, created_at) VALUES (:id, '', :t)")
        with database.writing() as connection:
            connection.execute(insert, [{"id": f"old-{i}", "t": utcnow() - 9 * DAY} for i in range(30)])
            connection.execute(insert, [{"id": f"new-{i}", "t": utcnow()} for i in range(5)])
    finally:
        database.dispose()

    assert _pruner("db_unit", database_target).prune() == {"results": 30}
    assert _count(database_target, "results") == 5


async def test_a_running_unit_prunes_by_itself(database_target):
    """The server's own pruner thread, at its interval: a result written 8 days ago disappears."""
    settings = _module("db_unit", "config").Settings(
        address="127.0.0.1:0", database_url=database_target.url, database_schema=database_target.schema,
        retention=Retention(interval_seconds=1))
    server = _module("db_unit", "server").build_server(settings).start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            db_grpc.RecordServiceStub(channel).PutResult(db_pb.PutResultRequest(instruction_id="x", result=b"r"),
                                                         timeout=10)
        _age(database_target, "results", "created_at", 8 * DAY)
        deadline = time.monotonic() + 20
        while _count(database_target, "results") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _count(database_target, "results") == 0
    finally:
        server.stop(grace=None)


async def test_rate_and_budget_counters_go_once_their_window_is_long_past(database_target):
    async with running("llm_unit", database_target):
        database = Database(database_target.url, database_target.schema)
        try:
            with database.writing() as connection:
                counters = sa.table("usage_counters", sa.column("user_id"), sa.column("window"),
                                    sa.column("window_start", sa.DateTime(timezone=True)), sa.column("amount"))
                connection.execute(sa.insert(counters), [
                    {"user_id": "u", "window": "month", "window_start": utcnow() - 70 * DAY, "amount": 5},
                    {"user_id": "u", "window": "month", "window_start": utcnow() - 20 * DAY, "amount": 7},
                ])
        finally:
            database.dispose()

        deleted = _pruner("llm_unit", database_target, ledger_days=1, deleted_days=1).prune()

    assert deleted.get("usage_counters") == 1  # this month's counter stays, whatever the settings
    assert _count(database_target, "usage_counters") == 1
