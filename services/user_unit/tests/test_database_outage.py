"""A unit whose database connection is cut answers UNAVAILABLE (callers retry it), then reconnects."""

import grpc
import pytest
import sqlalchemy as sa

from llmchatlinker.user.v1 import user_service_pb2 as pb
from services.common.errors import database_unreachable, error_info
from services.user_unit.errors import DOMAIN
from testkit.backends import cut_connections


@pytest.mark.parametrize("database_target", ["postgresql"], indirect=True)
def test_a_cut_connection_is_unavailable_and_the_next_call_reconnects(stub, database_target):
    user_id = stub.CreateUser(pb.CreateUserRequest(username="ada")).user.user_id
    assert cut_connections(database_target), "the unit's pooled connection was found and cut"

    with pytest.raises(grpc.RpcError) as raised:
        stub.GetUser(pb.GetUserRequest(user_id=user_id))
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    info = error_info(raised.value)
    assert (info.reason, info.domain) == ("DATABASE_UNAVAILABLE", DOMAIN)
    assert "try again" in raised.value.details()

    assert stub.GetUser(pb.GetUserRequest(user_id=user_id)).user.user_id == user_id


def test_only_failures_of_reaching_the_database_count_as_unreachable(tmp_path):
    broken_sql = sa.create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(sa.exc.OperationalError) as no_table, broken_sql.connect() as connection:
        connection.execute(sa.text("SELECT * FROM no_such_table"))
    assert not database_unreachable(no_table.value)  # a fault of the statement, not an outage

    refused = sa.create_engine("postgresql+psycopg2://postgres@127.0.0.1:1/postgres")
    with pytest.raises(sa.exc.OperationalError) as no_server:
        refused.connect()
    assert database_unreachable(no_server.value)
    assert database_unreachable(sa.exc.TimeoutError("QueuePool limit reached"))
    assert not database_unreachable(ValueError("a bug"))
