"""Provider API keys at rest: sealed under the key-encryption keys, rotated, migrated from plain text,
and no key in any log line when the database fails."""

import logging
import os
import stat

import grpc
import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from llmchatlinker.llm.v1 import llm_service_pb2 as pb
from services.common.config import SettingError
from services.common.db import Database
from services.llm_unit import keyring, server, store
from testkit.llm_unit import SECRET, add_llm, add_model, add_provider, expect_error, generate, kit_json, running_unit, settings_for

CANARY = "sk-canary-7f3e9d1c-NEVER-IN-A-LOG"


def raw_providers(database: Database) -> list[dict]:
    with database.engine.connect() as connection:
        return [dict(row) for row in connection.execute(sa.text("SELECT * FROM providers")).mappings()]


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


async def test_keys_are_stored_sealed(unit):
    await add_provider(unit.stub, api_key=CANARY)

    (row,) = raw_providers(unit.server.database)

    assert CANARY not in repr(row)
    assert "api_key" not in row and row["sealed_api_key"].startswith("gAAAA")  # a Fernet token


async def test_on_sqlite_the_unit_keeps_a_generated_key_beside_its_database_owner_only(tmp_path, provider_server):
    settings = settings_for(f"sqlite:///{tmp_path / 'data' / 'llm_unit.db'}")
    async with running_unit(settings) as first:
        llm = await add_model(first.stub, provider_server.openai_url, model=f"m@require_key={CANARY}",
                              api_key=CANARY)
    key_file = tmp_path / "data" / "llm_unit.db.key"
    kept = key_file.read_text()

    async with running_unit(settings) as second:  # the key is read back, not made again
        await generate(second.stub, llm.llm_id)

    assert key_file.read_text() == kept and Fernet(kept.strip())
    assert mode(key_file) == 0o600 and mode(tmp_path / "data") == 0o700
    assert all(mode(path) == 0o600 for path in (tmp_path / "data").glob("llm_unit.db*"))


async def test_a_new_key_in_front_reseals_the_stored_keys_so_the_old_one_can_go(tmp_path, provider_server, caplog):
    caplog.set_level(logging.INFO)
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    url = f"sqlite:///{tmp_path / 'unit.db'}"
    async with running_unit(settings_for(url, key_encryption_keys=(old,))) as unit:
        llm = await add_model(unit.stub, provider_server.openai_url, model=f"m@require_key={CANARY}", api_key=CANARY)

    async with running_unit(settings_for(url, key_encryption_keys=(new, old))) as unit:  # the rotation's start
        await generate(unit.stub, llm.llm_id)
        (row,) = raw_providers(unit.server.database)
    async with running_unit(settings_for(url, key_encryption_keys=(new,))) as unit:  # the old key dropped
        await generate(unit.stub, llm.llm_id)
    async with running_unit(settings_for(url, key_encryption_keys=(old,))) as unit:  # a key it never had
        error = await expect_error(generate(unit.stub, llm.llm_id), grpc.StatusCode.FAILED_PRECONDITION,
                                   "PROVIDER_KEY_UNREADABLE")

    assert Fernet(new).decrypt(row["sealed_api_key"].encode()) == CANARY.encode()
    assert "sealed 1 provider API keys again" in caplog.text
    assert "supply the key again" in error.details() and CANARY not in error.details()


def test_resealing_keeps_a_key_that_was_changed_meanwhile(tmp_path):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    database = Database(f"sqlite:///{tmp_path / 'unit.db'}")
    try:
        database.migrate(server.MIGRATIONS, store.metadata)
        with database.writing() as connection:
            connection.execute(sa.text(
                "INSERT INTO providers (id, name, api_endpoint, kind, sealed_api_key, created_at, updated_at) "
                "VALUES ('p-1', 'p', 'http://h/v1', 'openai', :sealed, '2024-01-01', '2024-01-01')"),
                {"sealed": Fernet(old).encrypt(b"read-first").decode()})

        with database.writing() as connection:
            def reseal_while_someone_sets_a_key(sealed):
                # As another replica's UpdateProvider would, between the read and the write.
                connection.execute(sa.text("UPDATE providers SET sealed_api_key = :sealed"),
                                   {"sealed": Fernet(new).encrypt(b"set-meanwhile").decode()})
                return keyring.Keyring([new, old]).reseal(sealed)

            assert store.reseal_api_keys(connection, reseal_while_someone_sets_a_key) == (0, 0)
        (row,) = raw_providers(database)
    finally:
        database.dispose()

    assert Fernet(new).decrypt(row["sealed_api_key"].encode()) == b"set-meanwhile"


async def test_keys_stored_in_plain_text_are_sealed_by_the_migration(database_target, provider_server):
    settings = settings_for(database_target.url, database_target.schema)
    database = Database(database_target.url, database_target.schema)
    try:
        database.migrate(server.MIGRATIONS, store.metadata, revision="llm_unit_0001")
        with database.engine.begin() as connection:
            connection.execute(sa.text(
                "INSERT INTO providers (id, name, api_endpoint, kind, api_key, created_at, updated_at) "
                "VALUES ('p-1', 'legacy', :url, 'openai', :key, :now, :now)"),
                {"url": provider_server.openai_url, "key": CANARY, "now": "2024-01-01 00:00:00+00:00"})
    finally:
        database.dispose()

    async with running_unit(settings) as unit:
        llm = await add_llm(unit.stub, "p-1", f"m@require_key={CANARY}")
        await generate(unit.stub, llm.llm_id)
        (row,) = raw_providers(unit.server.database)
        got = (await unit.stub.GetProvider(pb.GetProviderRequest(provider_id="p-1"))).provider

    assert CANARY not in repr(row) and row["sealed_api_key"].startswith("gAAAA")
    assert got.has_api_key
    (sent,) = await kit_json(provider_server, "/_testkit/requests")
    assert sent["authorization"] == f"Bearer {CANARY}"


async def test_no_key_in_any_log_line_when_the_database_fails(sqlite_unit, caplog):
    caplog.set_level(logging.DEBUG)
    provider = await add_provider(sqlite_unit.stub, name="before")
    with sqlite_unit.server.database.engine.begin() as connection:
        # An IntegrityError on update, an OperationalError (a table that is not there) on insert.
        connection.exec_driver_sql("CREATE TRIGGER refuse_update BEFORE UPDATE ON providers "
                                   "BEGIN SELECT RAISE(ABORT, 'forced failure'); END")
        connection.exec_driver_sql("CREATE TRIGGER break_insert BEFORE INSERT ON providers "
                                   "BEGIN INSERT INTO no_such_table VALUES (NEW.sealed_api_key); END")

    with pytest.raises(grpc.aio.AioRpcError) as updated:
        await sqlite_unit.stub.UpdateProvider(pb.UpdateProviderRequest(
            provider_id=provider.provider_id, api_key=CANARY, request_id="u-1"))
    with pytest.raises(grpc.aio.AioRpcError) as created:
        await add_provider(sqlite_unit.stub, name="after", api_key=CANARY)

    assert updated.value.code() == created.value.code() == grpc.StatusCode.INTERNAL
    assert "IntegrityError" in caplog.text and "OperationalError" in caplog.text
    assert caplog.text.count("[SQL parameters hidden due to hide_parameters=True]") >= 2
    assert CANARY not in caplog.text and "gAAAA" not in caplog.text
    assert all(CANARY not in str(record.args) for record in caplog.records)
    assert CANARY not in updated.value.details() + created.value.details()


def test_without_a_key_setting_postgresql_or_a_public_listener_refuses_to_start(tmp_path):
    with pytest.raises(SettingError, match='"LLMCHATLINKER_LLM_UNIT_KEY_ENCRYPTION_KEY" not set: on PostgreSQL'):
        keyring.for_unit((), on_sqlite=False, sqlite_file=None, address="127.0.0.1:50054")
    with pytest.raises(SettingError, match="listening on 0.0.0.0, beyond loopback"):
        keyring.for_unit((), on_sqlite=True, sqlite_file=tmp_path / "l.db", address="0.0.0.0:50054")
    assert not (tmp_path / "l.db.key").exists()


def test_main_on_postgresql_without_a_key_ends_in_one_line(monkeypatch):
    monkeypatch.setenv("LLMCHATLINKER_LLM_UNIT_DATABASE_URL", "postgresql://u:pw@127.0.0.1:1/none")
    monkeypatch.delenv("LLMCHATLINKER_LLM_UNIT_KEY_ENCRYPTION_KEY", raising=False)
    monkeypatch.setenv("LLMCHATLINKER_LLM_UNIT_PORT", "0")

    with pytest.raises(SystemExit) as exited:
        server.main()

    message = str(exited.value.code)
    assert message.startswith("llm_unit: ") and "\n" not in message
    assert "LLMCHATLINKER_LLM_UNIT_KEY_ENCRYPTION_KEY" in message and "pw" not in message


@pytest.mark.parametrize("value", ["not-a-key", f"{Fernet.generate_key().decode()},short"])
def test_a_malformed_key_setting_is_named_without_its_value(monkeypatch, value):
    with pytest.raises(SettingError) as refused:
        keyring.parse_keys(value)

    assert "LLMCHATLINKER_LLM_UNIT_KEY_ENCRYPTION_KEY" in str(refused.value)
    assert all(part not in str(refused.value) for part in value.split(","))


def test_the_keyring_shows_no_key():
    key = Fernet.generate_key().decode()

    assert key not in repr(keyring.Keyring([key])) and key not in repr(settings_for("sqlite://", key_encryption_keys=(key,)))
