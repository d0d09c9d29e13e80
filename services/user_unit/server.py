"""UserService over gRPC: proto in, one transaction per call, proto out."""

import pathlib
from collections.abc import Callable
from typing import TypeVar

from llmchatlinker.user.v1 import user_service_pb2 as pb
from llmchatlinker.user.v1 import user_service_pb2_grpc as pb_grpc
from services.common.admission import Admission
from services.common.db import Database, run_once
from services.common.errors import maps_errors
from services.common.protoconv import timestamp_fields
from services.common.retention import Pruner
from services.common.serving import ThreadedServer, run_threaded_unit
from services.user_unit import service, store
from services.user_unit.config import Settings
from services.user_unit.errors import DOMAIN


MIGRATIONS = pathlib.Path(__file__).resolve().parent / "migrations"
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["UserService"].full_name
Result = TypeVar("Result")


def user_fields(user: service.User) -> dict:
    """A pb.User's fields, as a dict: given to a constructor or to `repeated.add`, it is built in
    place, where a pb.User built apart is copied in, Timestamps and all (three times the cost
    for a 32-user reply)."""
    return {
        "user_id": user.user_id,
        "username": user.username,
        "display_name": user.display_name,
        "profile": user.profile,
        "record_instructions": user.record_instructions,
        "create_time": timestamp_fields(user.created_at),
        "update_time": timestamp_fields(user.updated_at),
    }


def optional(message, field: str) -> str | None:
    """The value of a proto3 `optional` field, or None when it is absent."""
    return getattr(message, field) if message.HasField(field) else None


def key_fields(key: service.Key) -> dict:
    return {
        "key_id": key.key_id,
        "role": key.role,
        "user_id": key.user_id,
        "name": key.name,
        "shown_part": key.shown_part,
        "create_time": timestamp_fields(key.created_at),
    }


class UserServicer(pb_grpc.UserServiceServicer):
    def __init__(self, database: Database):
        self._database = database

    def _read(self, work: Callable[[store.Users], Result]) -> Result:
        with self._database.reading() as connection:
            return work(store.Users(connection))

    @maps_errors(DOMAIN)
    def CreateUser(self, request: pb.CreateUserRequest, context) -> pb.CreateUserResponse:
        service.check_request_id(request.request_id)
        new = service.new_user(request.username, optional(request, "display_name"), optional(request, "profile"))

        def apply(session) -> pb.CreateUserResponse:
            return pb.CreateUserResponse(user=user_fields(service.create_user(store.Users(session), new)))

        with store.username_race(new.username):
            return run_once(self._database, request.request_id, pb.CreateUserResponse.FromString, apply)

    @maps_errors(DOMAIN)
    def UpdateUser(self, request: pb.UpdateUserRequest, context) -> pb.UpdateUserResponse:
        service.check_request_id(request.request_id)
        changes = service.user_changes(
            optional(request, "username"), optional(request, "display_name"), optional(request, "profile")
        )

        def apply(session) -> pb.UpdateUserResponse:
            user = service.update_user(store.Users(session), request.user_id, changes)
            return pb.UpdateUserResponse(user=user_fields(user))

        with store.username_race(changes.username):
            return run_once(self._database, request.request_id, pb.UpdateUserResponse.FromString, apply)

    @maps_errors(DOMAIN)
    def DeleteUser(self, request: pb.DeleteUserRequest, context) -> pb.DeleteUserResponse:
        service.check_request_id(request.request_id)

        def apply(session) -> pb.DeleteUserResponse:
            service.delete_user(store.Users(session), request.user_id)
            return pb.DeleteUserResponse()

        return run_once(self._database, request.request_id, pb.DeleteUserResponse.FromString, apply)

    @maps_errors(DOMAIN)
    def SetInstructionRecording(
        self, request: pb.SetInstructionRecordingRequest, context
    ) -> pb.SetInstructionRecordingResponse:
        service.check_request_id(request.request_id)

        def apply(session) -> pb.SetInstructionRecordingResponse:
            user = service.set_instruction_recording(store.Users(session), request.user_id, request.enabled)
            return pb.SetInstructionRecordingResponse(user=user_fields(user))

        return run_once(self._database, request.request_id, pb.SetInstructionRecordingResponse.FromString, apply)

    @maps_errors(DOMAIN)
    def GetUser(self, request: pb.GetUserRequest, context) -> pb.GetUserResponse:
        key = request.WhichOneof("key")
        keys = {key: getattr(request, key)} if key else {}
        return pb.GetUserResponse(user=user_fields(self._read(lambda users: service.get_user(users, **keys))))

    @maps_errors(DOMAIN)
    def BatchGetUsers(self, request: pb.BatchGetUsersRequest, context) -> pb.BatchGetUsersResponse:
        user_ids = service.check_batch(request.user_ids)
        found = self._read(lambda users: service.batch_get_users(users, user_ids, omit_missing=request.omit_missing))
        response = pb.BatchGetUsersResponse()
        for user in found:
            response.users.add(**user_fields(user))
        return response

    @maps_errors(DOMAIN)
    def ListUsers(self, request: pb.ListUsersRequest, context) -> pb.ListUsersResponse:
        found, next_token = self._read(lambda users: service.list_users(users, request.page_size, request.page_token))
        response = pb.ListUsersResponse(next_page_token=next_token)
        for user in found:
            response.users.add(**user_fields(user))
        return response

    @maps_errors(DOMAIN)
    def CreateKey(self, request: pb.CreateKeyRequest, context) -> pb.CreateKeyResponse:
        service.check_request_id(request.request_id)
        fields = service.new_key(request.key_id, request.key_hash, request.role, request.user_id, request.name,
                                 request.shown_part)

        def apply(session) -> pb.CreateKeyResponse:
            key = service.create_key(store.Keys(session), store.Users(session), fields)
            return pb.CreateKeyResponse(key=key_fields(key))

        return run_once(self._database, request.request_id, pb.CreateKeyResponse.FromString, apply)

    @maps_errors(DOMAIN)
    def RevokeKey(self, request: pb.RevokeKeyRequest, context) -> pb.RevokeKeyResponse:
        service.check_request_id(request.request_id)

        def apply(session) -> pb.RevokeKeyResponse:
            service.revoke_key(store.Keys(session), request.key_id)
            return pb.RevokeKeyResponse()

        return run_once(self._database, request.request_id, pb.RevokeKeyResponse.FromString, apply)

    @maps_errors(DOMAIN)
    def ListKeys(self, request: pb.ListKeysRequest, context) -> pb.ListKeysResponse:
        with self._database.reading() as connection:
            found, next_token = service.list_keys(store.Keys(connection), request.page_size, request.page_token)
        response = pb.ListKeysResponse(next_page_token=next_token)
        for key in found:
            response.keys.add(**key_fields(key))
        return response

    @maps_errors(DOMAIN)
    def VerifyKeys(self, request: pb.VerifyKeysRequest, context) -> pb.VerifyKeysResponse:
        with self._database.reading() as connection:
            found = service.verify_keys(store.Keys(connection), store.Users(connection), request.key_hashes)
        response = pb.VerifyKeysResponse()
        for key in found:
            response.keys.add(key_hash=key.key_hash, key=key_fields(key))
        return response


def build_server(settings: Settings) -> ThreadedServer:
    """A server on the settings' address, its database migrated to the newest schema."""
    def servicer(database: Database) -> UserServicer:
        database.migrate(MIGRATIONS, store.metadata)
        return UserServicer(database)

    database = Database(settings.database_url, settings.database_schema)
    return ThreadedServer.on_database(database, servicer, pb_grpc.add_UserServiceServicer_to_server, SERVICE_NAME,
                                      settings.address, Admission(settings.tls, settings.internal_token, DOMAIN),
                                      pruner=Pruner(database, store.RETENTION_RULES, settings.retention))


def main() -> None:
    run_threaded_unit("user_unit", Settings.from_env, build_server)
