"""The server around the rules: users and remembered requests outlive a restart."""

from llmchatlinker.user.v1 import user_service_pb2 as pb
from llmchatlinker.user.v1 import user_service_pb2_grpc as pb_grpc


def test_users_and_remembered_requests_survive_a_restart(start_server, connect):
    first = start_server()
    before = pb_grpc.UserServiceStub(connect(first.port))
    request = pb.CreateUserRequest(request_id="create-alice", username="alice")
    alice = before.CreateUser(request).user
    first.stop()

    second = start_server()
    after = pb_grpc.UserServiceStub(connect(second.port))

    assert after.GetUser(pb.GetUserRequest(user_id=alice.user_id)).user == alice
    assert after.CreateUser(request).user == alice
    assert list(after.ListUsers(pb.ListUsersRequest()).users) == [alice]
