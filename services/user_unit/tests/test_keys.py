"""Caller keys: stored by hash only, verified while live (their user live too), listed, revoked."""

import grpc
import pytest

from llmchatlinker.user.v1 import user_service_pb2 as pb
from services.common import keys


def make_key(stub, role: str = "app", user_id: str = "", name: str = "") -> tuple[str, pb.Key]:
    key, key_id = keys.new_key(), keys.new_key_id()
    stored = stub.CreateKey(pb.CreateKeyRequest(
        request_id=key_id, key_id=key_id, key_hash=keys.key_hash(key), role=role, user_id=user_id, name=name,
        shown_part=keys.shown_part(key)), timeout=10).key
    return key, stored


def verify(stub, *keys_shown: str) -> dict[str, pb.Key]:
    response = stub.VerifyKeys(pb.VerifyKeysRequest(key_hashes=[keys.key_hash(k) for k in keys_shown]), timeout=10)
    return {verified.key_hash: verified.key for verified in response.keys}


def test_a_created_key_verifies_by_its_hash_and_is_stored_without_the_key(stub):
    key, stored = make_key(stub, "admin", name="first admin")

    assert (stored.role, stored.name, stored.shown_part) == ("admin", "first admin", key[:8])
    assert key not in str(stored)
    assert verify(stub, key) == {keys.key_hash(key): stored}
    assert verify(stub, keys.new_key()) == {}


def test_a_revoked_key_no_longer_verifies_nor_lists(stub):
    key, stored = make_key(stub)
    other, _ = make_key(stub)
    stub.RevokeKey(pb.RevokeKeyRequest(request_id="r1", key_id=stored.key_id), timeout=10)

    assert list(verify(stub, key, other)) == [keys.key_hash(other)]
    assert stored.key_id not in [listed.key_id for listed in stub.ListKeys(pb.ListKeysRequest()).keys]


def test_revoking_an_unknown_key_is_not_found(stub, fails):
    fails(grpc.StatusCode.NOT_FOUND, "KEY_NOT_FOUND", stub.RevokeKey, pb.RevokeKeyRequest(key_id="key_nope"))


def test_a_user_key_names_a_live_user_and_stops_verifying_when_the_user_is_deleted(stub, create, fails):
    user = create("alice")
    key, stored = make_key(stub, "user", user.user_id)
    assert stored.user_id == user.user_id and verify(stub, key)

    stub.DeleteUser(pb.DeleteUserRequest(user_id=user.user_id), timeout=10)

    assert verify(stub, key) == {}
    fails(grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND", stub.CreateKey, pb.CreateKeyRequest(
        key_id=keys.new_key_id(), key_hash=keys.key_hash(keys.new_key()), role="user", user_id=user.user_id))


@pytest.mark.parametrize("role, user_id, reason", [
    ("root", "", "INVALID_ROLE"), ("user", "", "INVALID_KEY_USER"), ("app", "u1", "INVALID_KEY_USER")])
def test_a_key_has_a_known_role_and_a_user_exactly_when_it_is_a_user_key(stub, fails, role, user_id, reason):
    fails(grpc.StatusCode.INVALID_ARGUMENT, reason, stub.CreateKey, pb.CreateKeyRequest(
        key_id=keys.new_key_id(), key_hash=keys.key_hash(keys.new_key()), role=role, user_id=user_id))


def test_keys_list_oldest_first_in_pages(stub):
    made = [make_key(stub)[1].key_id for _ in range(3)]
    first = stub.ListKeys(pb.ListKeysRequest(page_size=2), timeout=10)
    second = stub.ListKeys(pb.ListKeysRequest(page_size=2, page_token=first.next_page_token), timeout=10)

    assert [key.key_id for key in [*first.keys, *second.keys]] == made
    assert second.next_page_token == ""
