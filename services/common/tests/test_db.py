"""What a unit's database keeps private: SQLite files readable by their owner only, and no
statement's values in an error's text; autocommitting() commits each statement by itself; a
statement on the driver's cursor fails as SQLAlchemy's own do."""

import os
import stat

import pytest
import sqlalchemy as sa

from services.common.db import Database, run_on_cursor
from services.common.errors import database_unreachable
from testkit.backends import cut_connections

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


def test_a_failed_statement_on_the_cursor_is_raised_as_sqlalchemy_raises_its_own(database_target):
    database = Database(database_target.url, database_target.schema)
    marker = "?" if database.is_sqlite else "%s"
    try:
        with pytest.raises(sa.exc.DBAPIError) as failed, database.writing() as connection:
            run_on_cursor(connection, f"INSERT INTO no_such_table VALUES ({marker})", (CANARY,))
    finally:
        database.dispose()

    assert CANARY not in str(failed.value) and "[SQL parameters hidden due to hide_parameters=True]" in str(failed.value)
    assert not database_unreachable(failed.value)  # the statement's fault


@pytest.mark.parametrize("database_target", ["postgresql"], indirect=True)
def test_a_connection_cut_under_the_cursor_is_unreachable_and_replaced(database_target):
    database = Database(database_target.url, database_target.schema)
    try:
        with database.autocommitting() as connection:
            assert run_on_cursor(connection, "SELECT 1", ()) == [(1,)]
        assert cut_connections(database_target)

        with pytest.raises(sa.exc.DBAPIError) as failed, database.autocommitting() as connection:
            run_on_cursor(connection, "SELECT 1", ())
        assert failed.value.connection_invalidated and database_unreachable(failed.value)
        with database.autocommitting() as connection:  # a new connection, not the dead one again
            assert run_on_cursor(connection, "SELECT 1", ()) == [(1,)]
    finally:
        database.dispose()


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
