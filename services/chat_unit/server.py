"""ChatService over gRPC: proto in, the unit's rules, proto out; one transaction per RPC."""

from collections.abc import Iterable

from llmchatlinker.chat.v1 import chat_service_pb2 as pb
from llmchatlinker.chat.v1 import chat_service_pb2_grpc as pb_grpc

from services.chat_unit import service
from services.chat_unit.config import Settings
from services.chat_unit.errors import DOMAIN
from services.chat_unit import store
from services.chat_unit.store import ChatStore, open_database
from services.common.admission import Admission
from services.common.db import BatchLedger, Database, run_once
from services.common.errors import DomainError, maps_errors
from services.common.protoconv import timestamp, timestamp_fields
from services.common.retention import Pruner
from services.common.serving import ThreadedServer, run_threaded_unit


SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ChatService"].full_name

ROLE_TO_PROTO = {
    service.Role.USER: pb.MESSAGE_ROLE_USER,
    service.Role.ASSISTANT: pb.MESSAGE_ROLE_ASSISTANT,
    service.Role.SYSTEM: pb.MESSAGE_ROLE_SYSTEM,
}
ROLE_FROM_PROTO = {value: role for role, value in ROLE_TO_PROTO.items()}


class ChatServicer(pb_grpc.ChatServiceServicer):
    def __init__(self, database: Database):
        self._database = database

    @maps_errors(DOMAIN)
    def CreateChat(self, request: pb.CreateChatRequest, context) -> pb.CreateChatResponse:
        def apply(session):
            chat = service.create_chat(ChatStore(session), request.title, request.user_ids)
            return pb.CreateChatResponse(chat=chat_proto(chat))

        return self._once(request.request_id, pb.CreateChatResponse, apply)

    @maps_errors(DOMAIN)
    def UpdateChat(self, request: pb.UpdateChatRequest, context) -> pb.UpdateChatResponse:
        title = request.title if request.HasField("title") else None

        def apply(session):
            chat = service.update_chat(ChatStore(session), request.chat_id, title)
            return pb.UpdateChatResponse(chat=chat_proto(chat))

        return self._once(request.request_id, pb.UpdateChatResponse, apply)

    @maps_errors(DOMAIN)
    def DeleteChat(self, request: pb.DeleteChatRequest, context) -> pb.DeleteChatResponse:
        def apply(session):
            service.delete_chat(ChatStore(session), request.chat_id)
            return pb.DeleteChatResponse()

        return self._once(request.request_id, pb.DeleteChatResponse, apply)

    @maps_errors(DOMAIN)
    def GetChat(self, request: pb.GetChatRequest, context) -> pb.GetChatResponse:
        with self._database.reading() as connection:
            chat, page = service.get_chat(
                ChatStore(connection), request.chat_id, request.message_page_size, request.message_page_token
            )
        response = pb.GetChatResponse(chat=chat_proto(chat), next_message_page_token=page.next_page_token)
        add_messages(response.messages, page.items)
        return response

    @maps_errors(DOMAIN)
    def ListChats(self, request: pb.ListChatsRequest, context) -> pb.ListChatsResponse:
        with self._database.reading() as connection:
            page = service.list_chats(
                ChatStore(connection), request.page_size, request.page_token, request.member_user_id
            )
        return pb.ListChatsResponse(
            chats=[chat_proto(chat) for chat in page.items], next_page_token=page.next_page_token
        )

    @maps_errors(DOMAIN)
    def AppendMessages(self, request: pb.AppendMessagesRequest, context) -> pb.AppendMessagesResponse:
        messages = [new_message(message) for message in request.messages]

        def apply(session):
            return append_response(service.append_messages(ChatStore(session), request.chat_id, messages))

        return self._once(request.request_id, pb.AppendMessagesResponse, apply)

    @maps_errors(DOMAIN)
    def GetMessage(self, request: pb.GetMessageRequest, context) -> pb.GetMessageResponse:
        with self._database.reading() as connection:
            message = service.get_message(ChatStore(connection), request.message_id)
        return pb.GetMessageResponse(message=message_proto(message))

    @maps_errors(DOMAIN)
    def ListRecentMessages(self, request: pb.ListRecentMessagesRequest, context) -> pb.ListRecentMessagesResponse:
        with self._database.reading() as connection:
            messages = service.list_recent_messages(ChatStore(connection), *recent_read(request))
        response = pb.ListRecentMessagesResponse()
        add_messages(response.messages, messages)
        return response

    @maps_errors(DOMAIN)
    def BatchListRecentMessages(
        self, request: pb.BatchListRecentMessagesRequest, context
    ) -> pb.BatchListRecentMessagesResponse:
        reads = [recent_read(read) for read in request.requests]
        with self._database.reading() as connection:
            results = service.batch_list_recent_messages(ChatStore(connection), reads)
        response = pb.BatchListRecentMessagesResponse()
        add_result = response.results.add
        for result in results:
            if isinstance(result, DomainError):
                add_result(failure=entry_failure(result))
            else:
                add_messages(add_result().messages, result)
        return response

    @maps_errors(DOMAIN)
    def BatchAppendMessages(self, request: pb.BatchAppendMessagesRequest, context) -> pb.BatchAppendMessagesResponse:
        appends = [
            service.Append(append.request_id, append.chat_id, [new_message(message) for message in append.messages])
            for append in request.requests
        ]
        with self._database.writing() as connection:
            ledger = BatchLedger(connection, pb.AppendMessagesResponse.FromString)
            results = service.batch_append_messages(ChatStore(connection), ledger, appends, append_response)
        response = pb.BatchAppendMessagesResponse()
        add_result = response.results.add
        for result in results:
            if isinstance(result, DomainError):
                add_result(failure=entry_failure(result))
            else:
                add_result().messages.extend(result.messages)
        return response

    def _once(self, request_id: str, response_type, apply):
        service.check_request_id(request_id)
        return run_once(self._database, request_id, response_type.FromString, apply)


def chat_proto(chat: service.Chat) -> pb.Chat:
    return pb.Chat(
        chat_id=chat.chat_id,
        title=chat.title,
        user_ids=chat.user_ids,
        create_time=timestamp(chat.created_at),
        update_time=timestamp(chat.updated_at),
    )


def recent_read(request: pb.ListRecentMessagesRequest) -> service.RecentRead:
    return service.RecentRead(
        request.chat_id, request.before_message_id, request.max_messages, request.max_chars, request.member_user_id
    )


def entry_failure(error: DomainError) -> dict:
    """A pb.EntryFailure's fields: what the single call's status would carry (a dict, built in place)."""
    return {"code": error.code.value[0], "message": error.message, "reason": error.reason}


def append_response(messages: list[service.Message]) -> pb.AppendMessagesResponse:
    """AppendMessages' response, which is also what a batch's append stores and answers."""
    response = pb.AppendMessagesResponse()
    add_messages(response.messages, messages)
    return response


def message_proto(message: service.Message) -> pb.Message:
    return pb.Message(**_message_fields(message))


def add_messages(field, messages: Iterable[service.Message]) -> None:
    """Builds the messages in place in a response's repeated field; a pb.Message built apart
    would be copied in, which on a context read costs as much as building it."""
    add = field.add
    for message in messages:
        add(**_message_fields(message))


def _message_fields(message: service.Message) -> dict:
    created = timestamp_fields(message.created_at)
    return dict(
        message_id=message.message_id,
        chat_id=message.chat_id,
        user_id=message.user_id,
        llm_id=message.llm_id,
        content=message.content,
        role=ROLE_TO_PROTO[message.role],
        create_time=created,
        update_time=created if message.updated_at == message.created_at else timestamp_fields(message.updated_at),
    )


def new_message(message: pb.NewMessage) -> service.NewMessage:
    return service.NewMessage(
        user_id=message.user_id,
        llm_id=message.llm_id,
        content=message.content,
        role=ROLE_FROM_PROTO.get(message.role),
    )


def build_server(settings: Settings) -> ThreadedServer:
    """A ready-to-start server on a migrated database (not started)."""
    database = open_database(settings.database_url, settings.database_schema)
    return ThreadedServer.on_database(database, ChatServicer, pb_grpc.add_ChatServiceServicer_to_server,
                                      SERVICE_NAME, settings.address,
                                      Admission(settings.tls, settings.internal_token, DOMAIN),
                                      pruner=Pruner(database, store.RETENTION_RULES, settings.retention))


def main() -> None:
    run_threaded_unit("chat_unit", Settings.from_env, build_server)
