"""Control Unit handlers of the USER_* instructions (user unit, and the db unit for records)."""

from llmchatlinker.db.v1 import db_service_pb2 as db_pb2
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from llmchatlinker.user.v1 import user_service_pb2 as user_pb2
from services.common.errors import InvalidArgument
from services.orchestrator.instructions.run import Payload, Run, collect, present, require


async def user_create(run: Run, request: orchestrator_pb2.UserCreate) -> Payload:
    response = await run.units.users.CreateUser(user_pb2.CreateUserRequest(
        request_id=run.request_id("create-user"),
        username=request.username,
        **present(request, "display_name", "profile"),
    ))
    return {"user": response.user}


async def user_update(run: Run, request: orchestrator_pb2.UserUpdate) -> Payload:
    response = await run.units.users.UpdateUser(user_pb2.UpdateUserRequest(
        request_id=run.request_id("update-user"),
        user_id=request.user_id,
        **present(request, "username", "display_name", "profile"),
    ))
    return {"user": response.user}


async def user_delete(run: Run, request: orchestrator_pb2.UserDelete) -> Payload:
    await run.units.users.DeleteUser(user_pb2.DeleteUserRequest(
        request_id=run.request_id("delete-user"), user_id=request.user_id,
    ))
    return {}


async def user_list(run: Run, request: orchestrator_pb2.UserList) -> Payload:
    users, token = await collect(run.units.users.ListUsers, user_pb2.ListUsersRequest(
        page_size=request.page_size, page_token=request.page_token), "users")
    return {"users": orchestrator_pb2.UserPage(users=users, next_page_token=token)}


async def own_user_list(run: Run, request: orchestrator_pb2.UserList) -> Payload:
    """USER_LIST for a user key: its own user only."""
    return {"users": orchestrator_pb2.UserPage(users=[await run.units.users.get_user(run.caller.user_id)])}


async def user_get(run: Run, request: orchestrator_pb2.UserGet) -> Payload:
    if request.user_id:
        # Joined with the other instructions' reads of users: many USER_GETs at once are one call.
        return {"user": await run.units.users.live_user(request.user_id)}
    if not request.username:
        raise InvalidArgument("USER_GET needs user_id or username", reason="INVALID_FIELD", field="user_id")
    response = await run.units.users.GetUser(user_pb2.GetUserRequest(username=request.username))
    return {"user": response.user}


async def _set_recording(run: Run, user_id: str, enabled: bool) -> Payload:
    response = await run.units.users.SetInstructionRecording(user_pb2.SetInstructionRecordingRequest(
        request_id=run.request_id("set-recording"), user_id=user_id, enabled=enabled,
    ))
    return {"user": response.user}


async def recording_enable(run: Run, request: orchestrator_pb2.UserInstructionRecordingEnable) -> Payload:
    return await _set_recording(run, request.user_id, True)


async def recording_disable(run: Run, request: orchestrator_pb2.UserInstructionRecordingDisable) -> Payload:
    return await _set_recording(run, request.user_id, False)


async def records_delete(run: Run, request: orchestrator_pb2.UserInstructionRecordsDelete) -> Payload:
    await run.units.users.get_user(require(request.user_id, "user_id"))  # an unknown user is NOT_FOUND, not "0 deleted"
    await run.units.records.DeleteRecords(db_pb2.DeleteRecordsRequest(
        request_id=run.request_id("delete-records"), user_id=request.user_id,
    ))
    return {}


async def records_list(run: Run, request: orchestrator_pb2.UserInstructionRecordsList) -> Payload:
    await run.units.users.get_user(require(request.user_id, "user_id"))  # an unknown user is NOT_FOUND, not an empty list
    records, token = await collect(run.units.records.ListRecords, db_pb2.ListRecordsRequest(
        user_id=require(request.user_id, "user_id"), page_size=request.page_size, page_token=request.page_token,
    ), "records")
    return {"records": orchestrator_pb2.RecordPage(records=records, next_page_token=token)}
