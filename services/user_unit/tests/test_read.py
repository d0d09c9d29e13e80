"""GetUser, BatchGetUsers and ListUsers: keys, order, limits and paging."""

import grpc
import pytest

from llmchatlinker.user.v1 import user_service_pb2 as pb

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
MISSING = "00000000-0000-4000-8000-000000000000"


def test_get_user_by_id_or_by_username_in_any_case(stub, create):
    user = create("alice")

    assert stub.GetUser(pb.GetUserRequest(user_id=user.user_id)).user == user
    assert stub.GetUser(pb.GetUserRequest(username="ALICE")).user == user


def test_get_user_without_a_key_is_invalid(stub, fails):
    fails(INVALID, "MISSING_USER_KEY", stub.GetUser, pb.GetUserRequest())


def test_get_user_with_an_empty_key_is_invalid(stub, fails):
    fails(INVALID, "MISSING_USER_ID", stub.GetUser, pb.GetUserRequest(user_id=""))
    fails(INVALID, "MISSING_USERNAME", stub.GetUser, pb.GetUserRequest(username=""))


def test_get_user_names_the_unknown_id(stub, fails):
    error = fails(NOT_FOUND, "USER_NOT_FOUND", stub.GetUser, pb.GetUserRequest(user_id=MISSING))

    assert MISSING in error.details()


def test_get_user_names_the_unknown_username(stub, fails):
    error = fails(NOT_FOUND, "USER_NOT_FOUND", stub.GetUser, pb.GetUserRequest(username="Nobody"))

    assert "nobody" in error.details()


def test_batch_get_users_answers_in_first_asked_order_once_each(stub, create):
    alice, bob, carol = create("alice"), create("bob"), create("carol")

    request = pb.BatchGetUsersRequest(user_ids=[carol.user_id, alice.user_id, carol.user_id, bob.user_id])
    users = stub.BatchGetUsers(request).users

    assert list(users) == [carol, alice, bob]


def test_batch_get_users_of_no_ids_is_empty(stub):
    assert list(stub.BatchGetUsers(pb.BatchGetUsersRequest()).users) == []


def test_batch_get_users_names_the_first_missing_id(stub, create, fails):
    alice = create("alice")
    other = "11111111-1111-4111-8111-111111111111"

    request = pb.BatchGetUsersRequest(user_ids=[alice.user_id, MISSING, other])
    error = fails(NOT_FOUND, "USER_NOT_FOUND", stub.BatchGetUsers, request)

    assert MISSING in error.details()
    assert other not in error.details()


def test_batch_get_users_takes_at_most_1000_ids(stub, create, fails):
    alice = create("alice")

    assert len(stub.BatchGetUsers(pb.BatchGetUsersRequest(user_ids=[alice.user_id] * 1000)).users) == 1
    request = pb.BatchGetUsersRequest(user_ids=[alice.user_id] * 1001)
    fails(INVALID, "TOO_MANY_USER_IDS", stub.BatchGetUsers, request)


def test_batch_get_users_rejects_an_empty_id(stub, create, fails):
    alice = create("alice")

    fails(INVALID, "MISSING_USER_ID", stub.BatchGetUsers, pb.BatchGetUsersRequest(user_ids=[alice.user_id, ""]))


def test_batch_get_users_of_one_unknown_id_is_not_found(stub, fails):
    error = fails(NOT_FOUND, "USER_NOT_FOUND", stub.BatchGetUsers, pb.BatchGetUsersRequest(user_ids=[MISSING]))

    assert MISSING in error.details()


def test_batch_get_users_omit_missing_leaves_out_unknown_and_deleted_ids(stub, create):
    alice, bob, carol = create("alice"), create("bob"), create("carol")
    stub.DeleteUser(pb.DeleteUserRequest(user_id=bob.user_id))

    ids = [MISSING, carol.user_id, bob.user_id, alice.user_id, carol.user_id]
    users = stub.BatchGetUsers(pb.BatchGetUsersRequest(user_ids=ids, omit_missing=True)).users

    assert list(users) == [carol, alice]


def test_batch_get_users_omit_missing_of_only_unknown_ids_is_empty(stub, create):
    gone = create("gone")
    stub.DeleteUser(pb.DeleteUserRequest(user_id=gone.user_id))

    for ids in ([MISSING], [gone.user_id], [MISSING, gone.user_id, MISSING]):
        assert list(stub.BatchGetUsers(pb.BatchGetUsersRequest(user_ids=ids, omit_missing=True)).users) == []


def test_batch_get_users_omit_missing_of_known_ids_answers_them_all(stub, create):
    alice, bob = create("alice"), create("bob")

    request = pb.BatchGetUsersRequest(user_ids=[bob.user_id, alice.user_id], omit_missing=True)

    assert list(stub.BatchGetUsers(request).users) == [bob, alice]


def test_batch_get_users_omit_missing_still_rejects_malformed_requests(stub, create, fails):
    alice = create("alice")

    request = pb.BatchGetUsersRequest(user_ids=[MISSING, alice.user_id, ""], omit_missing=True)
    fails(INVALID, "MISSING_USER_ID", stub.BatchGetUsers, request)
    request = pb.BatchGetUsersRequest(user_ids=[alice.user_id] * 1001, omit_missing=True)
    fails(INVALID, "TOO_MANY_USER_IDS", stub.BatchGetUsers, request)


def walk(stub, page_size: int) -> tuple[list[str], int]:
    """Every username the list gives, following tokens, and how many pages it took."""
    names, token, pages = [], "", 0
    while True:
        response = stub.ListUsers(pb.ListUsersRequest(page_size=page_size, page_token=token))
        names += [user.username for user in response.users]
        pages += 1
        token = response.next_page_token
        if not token:
            return names, pages


@pytest.mark.parametrize(("page_size", "pages"), [(1, 7), (2, 4), (3, 3), (7, 1), (100, 1)])
def test_list_users_tokens_walk_every_user_oldest_first(stub, create, page_size, pages):
    names = [f"user_{index}" for index in range(7)]
    for name in names:
        create(name)

    assert walk(stub, page_size) == (names, pages)


def test_list_users_pages_skip_users_deleted_meanwhile(stub, create):
    users = [create(f"user_{index}") for index in range(4)]
    first = stub.ListUsers(pb.ListUsersRequest(page_size=2))

    stub.DeleteUser(pb.DeleteUserRequest(user_id=users[2].user_id))
    rest = stub.ListUsers(pb.ListUsersRequest(page_size=2, page_token=first.next_page_token))

    assert [user.username for user in first.users] == ["user_0", "user_1"]
    assert ([user.username for user in rest.users], rest.next_page_token) == (["user_3"], "")


def test_list_users_page_size_zero_means_50_and_large_sizes_are_capped(stub, create):
    for index in range(51):
        create(f"user_{index:03}")

    default = stub.ListUsers(pb.ListUsersRequest())
    capped = stub.ListUsers(pb.ListUsersRequest(page_size=1_000_000))

    assert (len(default.users), bool(default.next_page_token)) == (50, True)
    assert (len(capped.users), capped.next_page_token) == (51, "")


def test_list_users_of_no_users_is_one_empty_page(stub):
    response = stub.ListUsers(pb.ListUsersRequest())

    assert (list(response.users), response.next_page_token) == ([], "")


def test_list_users_rejects_a_negative_page_size(stub, fails):
    fails(INVALID, "INVALID_PAGE_SIZE", stub.ListUsers, pb.ListUsersRequest(page_size=-1))


@pytest.mark.parametrize("token", ["not-a-token", "djE6eHl6", "%%%"])
def test_list_users_rejects_a_token_it_did_not_give_out(stub, fails, token):
    fails(INVALID, "INVALID_PAGE_TOKEN", stub.ListUsers, pb.ListUsersRequest(page_token=token))
