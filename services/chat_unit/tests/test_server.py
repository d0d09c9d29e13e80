"""The chat unit as a deployable: health, reflection, restarts, schema, settings and long chats."""

import concurrent.futures

import grpc
import pytest
import sqlalchemy as sa
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from llmchatlinker.chat.v1 import chat_service_pb2 as pb

from services.chat_unit import store
from services.chat_unit.config import Settings
from services.chat_unit.server import SERVICE_NAME
from services.common.db import Database


def test_health_reports_serving(channel):
    health = health_pb2_grpc.HealthStub(channel)

    for service in (SERVICE_NAME, ""):
        response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_chat_service(channel):
    services = set(ProtoReflectionDescriptorDatabase(channel).get_services())

    assert {"llmchatlinker.chat.v1.ChatService", "grpc.health.v1.Health"} <= services


def test_stopped_server_refuses_calls(start):
    server = start()
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        server.stop(grace=None)
        with pytest.raises(grpc.RpcError):
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)


def test_restart_keeps_chats_messages_and_answered_requests(start, connect):
    first = start()
    client = connect(first)
    chat = client.create(title="Durable", user_ids=["u1", "u2"])
    stored = client.append(chat.chat_id, "kept", request_id="append-1")
    first.stop(grace=None)

    client = connect(start())
    response = client.get(chat.chat_id)
    assert (response.chat.title, list(response.chat.user_ids)) == ("Durable", ["u1", "u2"])
    assert response.chat.create_time == chat.create_time
    assert list(response.messages) == stored
    assert client.append(chat.chat_id, "kept", request_id="append-1") == stored
    assert len(client.get(chat.chat_id).messages) == 1


def test_migrated_schema_matches_the_models(start, database_target):
    start()
    database = Database(database_target.url, database_target.schema)
    try:
        assert database.schema_drift(store.metadata) == []
    finally:
        database.dispose()


def test_tail_of_a_chat_is_read_through_the_chat_seq_index(start, database_target):
    start()
    database = Database(database_target.url, database_target.schema)
    query = store.tail_query("some-chat", 1000, 5).compile(database.engine, compile_kwargs={"literal_binds": True})
    try:
        with database.transaction() as session:
            if database.is_sqlite:
                plan = " ".join(str(row[-1]) for row in session.execute(sa.text(f"EXPLAIN QUERY PLAN {query}")))
                assert "ix_messages_chat_id_seq" in plan and "TEMP B-TREE" not in plan, plan
            else:
                session.execute(sa.text("SET LOCAL enable_seqscan = off"))
                plan = " ".join(row[0] for row in session.execute(sa.text(f"EXPLAIN {query}")))
                assert "Index Scan Backward using ix_messages_chat_id_seq" in plan and "Sort" not in plan, plan
    finally:
        database.dispose()


def test_recent_messages_of_a_long_chat_are_its_newest(client):
    chat_id = client.create().chat_id
    batches = [[f"b{batch}-{n}" for n in range(10)] for batch in range(199)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda contents: client.append(chat_id, *contents), batches))
    client.append(chat_id, *[f"last-{n}" for n in range(10)])

    assert client.recent(chat_id, max_messages=5) == [f"last-{n}" for n in range(5, 10)]
    newest_page = client.get(chat_id, page_size=1000)
    older = client.get(chat_id, page_size=1000, page_token=newest_page.next_message_page_token)
    assert len(newest_page.messages) + len(older.messages) == 2000
    assert older.next_message_page_token == ""


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("LLMCHATLINKER_CHAT_UNIT_DATABASE_URL", "sqlite:///chat.db")
    monkeypatch.delenv("LLMCHATLINKER_CHAT_UNIT_PORT", raising=False)
    monkeypatch.delenv("LLMCHATLINKER_CHAT_UNIT_DATABASE_SCHEMA", raising=False)
    monkeypatch.delenv("LLMCHATLINKER_HOST", raising=False)

    assert Settings.from_env() == Settings(address="127.0.0.1:50053", database_url="sqlite:///chat.db")


def test_settings_fail_fast_naming_a_missing_database_url(monkeypatch):
    monkeypatch.delenv("LLMCHATLINKER_CHAT_UNIT_DATABASE_URL", raising=False)

    with pytest.raises(RuntimeError, match="LLMCHATLINKER_CHAT_UNIT_DATABASE_URL"):
        Settings.from_env()
