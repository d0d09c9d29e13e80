"""CreateUser: the username, display name and profile rules, uniqueness, and request-id de-duplication."""

import uuid

import grpc
import pytest

from llmchatlinker.user.v1 import user_service_pb2 as pb

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def test_create_user_returns_the_stored_user(stub, create):
    user = create("alice", display_name="Alice A.", profile="likes tea")

    assert uuid.UUID(user.user_id).version == 4
    assert (user.username, user.display_name, user.profile) == ("alice", "Alice A.", "likes tea")
    assert user.record_instructions is False
    assert user.create_time.seconds > 0
    assert user.update_time == user.create_time
    assert stub.GetUser(pb.GetUserRequest(user_id=user.user_id)).user == user


def test_create_user_lower_cases_the_username(create):
    assert create("Bob_The_2nd").username == "bob_the_2nd"


@pytest.mark.parametrize("display_name", [None, ""])
def test_create_user_without_display_name_shows_the_username(create, display_name):
    fields = {} if display_name is None else {"display_name": display_name}
    user = create("carol", **fields)

    assert user.display_name == "carol"
    assert user.profile == ""


def test_create_user_accepts_the_longest_allowed_fields(create):
    user = create("d" * 30, display_name="n" * 100, profile="p" * 10_000)

    assert (len(user.username), len(user.display_name), len(user.profile)) == (30, 100, 10_000)


@pytest.mark.parametrize(
    "username",
    ["", "ab", "1abc", "_abc", "a" * 31, "has space", "dash-ed", "émile", "abc\n", "ab.c"],
)
def test_create_user_rejects_a_username_breaking_the_rule(stub, fails, username):
    error = fails(INVALID, "INVALID_USERNAME", stub.CreateUser, pb.CreateUserRequest(username=username))

    assert "^[a-z][a-z0-9_]{2,29}$" in error.details()


def test_create_user_rejects_a_display_name_over_100_characters(stub, fails):
    request = pb.CreateUserRequest(username="erin", display_name="x" * 101)

    fails(INVALID, "DISPLAY_NAME_TOO_LONG", stub.CreateUser, request)


def test_create_user_rejects_a_profile_over_10000_characters(stub, fails):
    request = pb.CreateUserRequest(username="erin", profile="x" * 10_001)

    fails(INVALID, "PROFILE_TOO_LONG", stub.CreateUser, request)


def test_create_user_rejects_a_request_id_over_128_characters(stub, fails):
    request = pb.CreateUserRequest(request_id="r" * 129, username="erin")

    fails(INVALID, "REQUEST_ID_TOO_LONG", stub.CreateUser, request)


def test_create_user_refuses_a_username_a_live_user_has(stub, create, fails):
    create("frank")

    error = fails(
        grpc.StatusCode.ALREADY_EXISTS, "USERNAME_TAKEN", stub.CreateUser, pb.CreateUserRequest(username="FRANK")
    )
    assert "frank" in error.details()


def test_deleted_users_username_can_be_taken_again(stub, create):
    first = create("grace")
    stub.DeleteUser(pb.DeleteUserRequest(user_id=first.user_id))

    second = create("grace")

    assert second.user_id != first.user_id
    assert stub.GetUser(pb.GetUserRequest(username="grace")).user.user_id == second.user_id


def test_repeated_request_id_creates_the_user_once(stub):
    # The retry is answered from memory, not refused as a taken username.
    request = pb.CreateUserRequest(request_id="req-1", username="heidi")

    first = stub.CreateUser(request).user
    again = stub.CreateUser(request).user

    assert again == first
    assert [user.user_id for user in stub.ListUsers(pb.ListUsersRequest()).users] == [first.user_id]


def test_distinct_request_ids_for_the_same_name_are_two_attempts(stub, fails):
    stub.CreateUser(pb.CreateUserRequest(request_id="req-3", username="judy"))

    fails(
        grpc.StatusCode.ALREADY_EXISTS,
        "USERNAME_TAKEN",
        stub.CreateUser,
        pb.CreateUserRequest(request_id="req-4", username="judy"),
    )
