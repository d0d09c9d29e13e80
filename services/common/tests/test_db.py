"""What a unit's database keeps private: SQLite files readable by their owner only, and no
statement's values in an error's text; autocommitting() commits each statement by itself."""

import os
import stat

import pytest
import sqlalchemy as sa

from services.common.db import Database, run_on_cursor

CANARY = "canary-value-never-shown-4c1d"


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_sqlite_files_are_created_readable_by_their_owner_only(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'data' / 'unit.db'}")
    try:
        with database.writing() as connection:
            connection.exec_driver_sql("CREATE TABLE t (x TEXT)")
            connection.execute(sa.text("INSERT INTO t VALUES (:x)"), {"x": CANARY})
        files = list((tmp_path / "data").glob("unit.db*"))
        assert {path.name for path in files} >= {"unit.db", "unit.db-wal", "unit.db-shm"}
        assert all(mode(path) == 0o600 for path in files), {path.name: oct(mode(path)) for path in files}
        assert mode(tmp_path / "data") == 0o700
    finally:
        database.dispose()


def test_an_sqlite_file_left_readable_by_others_is_narrowed(tmp_path):
    path = tmp_path / "unit.db"
    path.touch(mode=0o644)
    path.chmod(0o644)

    Database(f"sqlite:///{path}").dispose()

    assert mode(path) == 0o600


def test_a_failed_statement_shows_no_parameter_values(database_target):
    database = Database(database_target.url, database_target.schema)
    try:
        with pytest.raises(sa.exc.DBAPIError) as failed, database.writing() as connection:
            connection.execute(sa.text("INSERT INTO no_such_table VALUES (:secret)"), {"secret": CANARY})
    finally:
        database.dispose()

    assert CANARY not in str(failed.value) and "[SQL parameters hidden due to hide_parameters=True]" in str(failed.value)


def test_a_statement_on_an_autocommitting_connection_is_committed_by_itself(database_target):
    database = Database(database_target.url, database_target.schema)
    try:
        with database.writing() as connection:
            if database.schema:
                connection.execute(sa.text(f'CREATE SCHEMA "{database.schema}"'))
            connection.execute(sa.text("CREATE TABLE counts (n INTEGER)"))
        with database.autocommitting() as connection:
            run_on_cursor(connection, "INSERT INTO counts VALUES (1)", ())  # no commit follows on PostgreSQL
        with database.autocommitting(reads_only=True) as connection:
            assert run_on_cursor(connection, "SELECT count(*) FROM counts", ()) == [(1,)]
        if not database.is_sqlite:  # its own pool: the others' connections stay in transactions
            with database.autocommitting() as mine, database.engine.connect() as shared:
                assert mine.connection.driver_connection.autocommit
                assert not shared.connection.driver_connection.autocommit
    finally:
        database.dispose()
