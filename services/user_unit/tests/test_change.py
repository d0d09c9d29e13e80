"""UpdateUser, SetInstructionRecording and DeleteUser: what changes, what stays, and what vanishes."""

import grpc
import pytest

from llmchatlinker.user.v1 import user_service_pb2 as pb

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
MISSING = "00000000-0000-4000-8000-000000000000"


def test_update_user_changes_only_the_fields_that_are_set(stub, create):
    user = create("alice", display_name="Alice", profile="old")

    updated = stub.UpdateUser(pb.UpdateUserRequest(user_id=user.user_id, profile="new")).user

    assert (updated.username, updated.display_name, updated.profile) == ("alice", "Alice", "new")
    assert updated.create_time == user.create_time
    assert updated.update_time.ToDatetime() > user.update_time.ToDatetime()
    assert stub.GetUser(pb.GetUserRequest(user_id=user.user_id)).user == updated


def test_update_user_with_nothing_set_leaves_the_user_as_it_was(stub, create):
    user = create("bob")

    assert stub.UpdateUser(pb.UpdateUserRequest(user_id=user.user_id)).user == user


def test_update_user_renames_and_frees_the_old_name(stub, create):
    user = create("carol")

    renamed = stub.UpdateUser(pb.UpdateUserRequest(user_id=user.user_id, username="Caroline")).user

    assert renamed.username == "caroline"
    assert create("carol").user_id != user.user_id


def test_update_user_to_an_empty_display_name_shows_the_username(stub, create):
    user = create("dave", display_name="Dave")

    updated = stub.UpdateUser(pb.UpdateUserRequest(user_id=user.user_id, display_name="")).user

    assert updated.display_name == "dave"


def test_update_user_may_keep_its_own_username(stub, create):
    user = create("erin")

    assert stub.UpdateUser(pb.UpdateUserRequest(user_id=user.user_id, username="ERIN")).user == user


def test_update_user_refuses_a_username_another_live_user_has(stub, create, fails):
    create("frank")
    user = create("grace")

    request = pb.UpdateUserRequest(user_id=user.user_id, username="frank")
    fails(grpc.StatusCode.ALREADY_EXISTS, "USERNAME_TAKEN", stub.UpdateUser, request)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"username": "x"}, "INVALID_USERNAME"),
        ({"display_name": "d" * 101}, "DISPLAY_NAME_TOO_LONG"),
        ({"profile": "p" * 10_001}, "PROFILE_TOO_LONG"),
        ({"request_id": "r" * 129}, "REQUEST_ID_TOO_LONG"),
    ],
)
def test_update_user_rejects_invalid_fields(stub, create, fails, fields, reason):
    user = create("heidi")

    fails(INVALID, reason, stub.UpdateUser, pb.UpdateUserRequest(user_id=user.user_id, **fields))
    assert stub.GetUser(pb.GetUserRequest(user_id=user.user_id)).user == user


def test_update_user_with_a_repeated_request_id_is_applied_once(stub, create):
    user = create("ivan")
    first = stub.UpdateUser(pb.UpdateUserRequest(request_id="u-1", user_id=user.user_id, profile="v1")).user
    stub.UpdateUser(pb.UpdateUserRequest(user_id=user.user_id, profile="v2"))

    again = stub.UpdateUser(pb.UpdateUserRequest(request_id="u-1", user_id=user.user_id, profile="v1")).user

    assert again == first
    assert stub.GetUser(pb.GetUserRequest(user_id=user.user_id)).user.profile == "v2"


def test_set_instruction_recording_turns_it_on_and_off(stub, create):
    user = create("judy")

    on = stub.SetInstructionRecording(pb.SetInstructionRecordingRequest(user_id=user.user_id, enabled=True)).user
    assert on.record_instructions is True
    assert stub.GetUser(pb.GetUserRequest(user_id=user.user_id)).user.record_instructions is True

    off = stub.SetInstructionRecording(pb.SetInstructionRecordingRequest(user_id=user.user_id, enabled=False)).user
    assert off.record_instructions is False


def test_delete_user_hides_it_from_get_batch_get_and_list(stub, create, fails):
    kept = create("kim")
    gone = create("leo")

    stub.DeleteUser(pb.DeleteUserRequest(user_id=gone.user_id))

    fails(NOT_FOUND, "USER_NOT_FOUND", stub.GetUser, pb.GetUserRequest(user_id=gone.user_id))
    fails(NOT_FOUND, "USER_NOT_FOUND", stub.GetUser, pb.GetUserRequest(username="leo"))
    batch = pb.BatchGetUsersRequest(user_ids=[kept.user_id, gone.user_id])
    error = fails(NOT_FOUND, "USER_NOT_FOUND", stub.BatchGetUsers, batch)
    assert gone.user_id in error.details()
    assert [user.user_id for user in stub.ListUsers(pb.ListUsersRequest()).users] == [kept.user_id]


def test_deleted_user_can_no_longer_be_changed(stub, create, fails):
    user = create("mia")
    stub.DeleteUser(pb.DeleteUserRequest(user_id=user.user_id))

    fails(NOT_FOUND, "USER_NOT_FOUND", stub.DeleteUser, pb.DeleteUserRequest(user_id=user.user_id))
    fails(NOT_FOUND, "USER_NOT_FOUND", stub.UpdateUser, pb.UpdateUserRequest(user_id=user.user_id, profile="x"))
    request = pb.SetInstructionRecordingRequest(user_id=user.user_id, enabled=True)
    fails(NOT_FOUND, "USER_NOT_FOUND", stub.SetInstructionRecording, request)


def test_delete_user_with_a_repeated_request_id_answers_again(stub, create):
    user = create("ned")

    stub.DeleteUser(pb.DeleteUserRequest(request_id="d-1", user_id=user.user_id))
    stub.DeleteUser(pb.DeleteUserRequest(request_id="d-1", user_id=user.user_id))

    assert list(stub.ListUsers(pb.ListUsersRequest()).users) == []


@pytest.mark.parametrize(
    ("method", "request_type"),
    [
        ("UpdateUser", pb.UpdateUserRequest),
        ("DeleteUser", pb.DeleteUserRequest),
        ("SetInstructionRecording", pb.SetInstructionRecordingRequest),
    ],
)
def test_mutations_name_the_unknown_user(stub, fails, method, request_type):
    error = fails(NOT_FOUND, "USER_NOT_FOUND", getattr(stub, method), request_type(user_id=MISSING))

    assert MISSING in error.details()


@pytest.mark.parametrize(
    ("method", "request_type"),
    [
        ("UpdateUser", pb.UpdateUserRequest),
        ("DeleteUser", pb.DeleteUserRequest),
        ("SetInstructionRecording", pb.SetInstructionRecordingRequest),
    ],
)
def test_mutations_reject_an_empty_user_id(stub, fails, method, request_type):
    fails(INVALID, "MISSING_USER_ID", getattr(stub, method), request_type(user_id=""))
