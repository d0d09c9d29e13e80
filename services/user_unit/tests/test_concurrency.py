"""Concurrent callers: distinct names all succeed, one name is won exactly once."""

import grpc
import pytest

from llmchatlinker.user.v1 import user_service_pb2 as pb
from services.common.errors import error_info
from services.user_unit import service
from testkit.units import together


def create_together(stub, requests: list[pb.CreateUserRequest]) -> list[pb.User | grpc.RpcError]:
    return [getattr(outcome, "user", outcome) for outcome in together(stub.CreateUser, requests)]


def test_fifty_concurrent_creates_with_distinct_names_all_succeed(stub):
    names = [f"user_{index:02}" for index in range(50)]

    outcomes = create_together(stub, [pb.CreateUserRequest(username=name) for name in names])

    assert all(isinstance(outcome, pb.User) for outcome in outcomes), outcomes
    listed = stub.ListUsers(pb.ListUsersRequest(page_size=100)).users
    assert sorted(user.username for user in listed) == names
    assert len({user.user_id for user in listed}) == 50


def test_ten_concurrent_creates_of_one_name_have_one_winner(stub):
    requests = [pb.CreateUserRequest(request_id=f"same-{index}", username="popular") for index in range(10)]

    outcomes = create_together(stub, requests)

    winners = [outcome for outcome in outcomes if isinstance(outcome, pb.User)]
    losers = [(error.code(), error_info(error).reason) for error in outcomes if isinstance(error, grpc.RpcError)]
    assert len(winners) == 1
    assert losers == [(grpc.StatusCode.ALREADY_EXISTS, "USERNAME_TAKEN")] * 9
    assert [user.user_id for user in stub.ListUsers(pb.ListUsersRequest()).users] == [winners[0].user_id]


def test_ten_concurrent_creates_without_request_ids_have_one_winner(stub):
    outcomes = create_together(stub, [pb.CreateUserRequest(username="popular") for _ in range(10)])

    codes = sorted(
        "OK" if isinstance(outcome, pb.User) else f"{outcome.code().name}/{error_info(outcome).reason}"
        for outcome in outcomes
    )
    assert codes == ["ALREADY_EXISTS/USERNAME_TAKEN"] * 9 + ["OK"]


def test_concurrent_retries_of_one_request_id_all_get_the_same_user(stub):
    outcomes = create_together(stub, [pb.CreateUserRequest(request_id="once", username="retried")] * 10)

    assert all(isinstance(outcome, pb.User) for outcome in outcomes), outcomes
    assert len({outcome.user_id for outcome in outcomes}) == 1
    assert len(stub.ListUsers(pb.ListUsersRequest()).users) == 1


def test_concurrent_retries_of_one_delete_all_succeed(stub):
    user = stub.CreateUser(pb.CreateUserRequest(username="leaving")).user

    outcomes = together(stub.DeleteUser, [pb.DeleteUserRequest(request_id="bye", user_id=user.user_id)] * 10)

    assert all(isinstance(outcome, pb.DeleteUserResponse) for outcome in outcomes), outcomes
    assert list(stub.ListUsers(pb.ListUsersRequest()).users) == []


@pytest.mark.parametrize("request_id", ["", "race-1"])
def test_a_lost_race_for_a_username_is_already_exists(stub, create, fails, monkeypatch, request_id):
    # Stand in for a writer that committed the name between our check and our insert:
    # the check passes, and the database's partial unique index has the last word.
    create("olga")
    monkeypatch.setattr(service, "_claim_username", lambda users, username: None)

    request = pb.CreateUserRequest(request_id=request_id, username="olga")
    fails(grpc.StatusCode.ALREADY_EXISTS, "USERNAME_TAKEN", stub.CreateUser, request)
    assert len(stub.ListUsers(pb.ListUsersRequest()).users) == 1
