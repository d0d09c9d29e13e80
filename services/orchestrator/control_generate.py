"""Control Unit handlers of LLM_RESPONSE_GENERATE and _REGENERATE: history, a streamed generation, storage.

Nothing is stored until the model has answered in full: a failed or cancelled generation leaves
the chat as it was. Cancelling the task that runs a handler cancels the GenerateReply call.
"""

import asyncio

from llmchatlinker.chat.v1 import chat_service_pb2 as chat_pb2
from llmchatlinker.llm.v1 import llm_service_pb2 as llm_pb2
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from services.common.errors import FailedPrecondition, Internal, InvalidArgument, PermissionDenied
from services.orchestrator.channels import GENERATION_DEADLINE_S, UNARY_DEADLINE_S
from services.orchestrator.control_run import Payload, Run, get_user, require

# The longest message the chat unit stores.
MAX_MESSAGE_CHARS = 1_000_000

_ROLE_NAMES = {
    chat_pb2.MESSAGE_ROLE_USER: "user",
    chat_pb2.MESSAGE_ROLE_ASSISTANT: "assistant",
    chat_pb2.MESSAGE_ROLE_SYSTEM: "system",
}


async def generate(run: Run, request: orchestrator_pb2.LlmResponseGenerate) -> Payload:
    if not 1 <= len(request.user_input) <= MAX_MESSAGE_CHARS:
        raise InvalidArgument(f"user_input must be 1 to {MAX_MESSAGE_CHARS:,} characters "
                              f"(got {len(request.user_input):,})", reason="INVALID_FIELD", field="user_input")
    chats, llms = run.channels.chats, run.channels.llms
    # Independent reads, in parallel; their errors are reported in a fixed order.
    chat_answer, user_answer, llm_answer = await asyncio.gather(
        chats.GetChat(chat_pb2.GetChatRequest(chat_id=require(request.chat_id, "chat_id"), message_page_size=1),
                      timeout=UNARY_DEADLINE_S),
        get_user(run.channels, request.user_id),
        llms.GetLlm(llm_pb2.GetLlmRequest(llm_id=require(request.llm_id, "llm_id")), timeout=UNARY_DEADLINE_S),
        return_exceptions=True,
    )
    chat = _value(chat_answer).chat
    _require_member(request.user_id, chat)
    _value(user_answer)  # a member deleted since may no longer speak
    llm = _value(llm_answer).llm
    if request.provider_id and request.provider_id != llm.provider_id:
        raise InvalidArgument(f"llm {llm.llm_id!r} is served by provider {llm.provider_id!r}, "
                              f"not {request.provider_id!r}", reason="LLM_PROVIDER_MISMATCH",
                              llmId=llm.llm_id, providerId=request.provider_id)

    # One message of the model's budget goes to the new input.
    history = await _history(run, llm, chat.chat_id, before_message_id="", reserved=1)
    final = await _generate(run, llm, history + [llm_pb2.ConversationMessage(role="user", content=request.user_input)])
    stored = await chats.AppendMessages(chat_pb2.AppendMessagesRequest(
        request_id=run.request_id("append-messages"),
        chat_id=chat.chat_id,
        messages=[
            chat_pb2.NewMessage(user_id=request.user_id, content=request.user_input, role=chat_pb2.MESSAGE_ROLE_USER),
            chat_pb2.NewMessage(user_id=request.user_id, llm_id=llm.llm_id, content=final.content,
                                role=chat_pb2.MESSAGE_ROLE_ASSISTANT),
        ],
    ), timeout=UNARY_DEADLINE_S)
    return _response(stored.messages[-1], final)


async def regenerate(run: Run, request: orchestrator_pb2.LlmResponseRegenerate) -> Payload:
    chats, llms = run.channels.chats, run.channels.llms
    message = (await chats.GetMessage(chat_pb2.GetMessageRequest(message_id=require(request.message_id, "message_id")),
                                      timeout=UNARY_DEADLINE_S)).message
    if request.user_id:
        chat = (await chats.GetChat(chat_pb2.GetChatRequest(chat_id=message.chat_id, message_page_size=1),
                                    timeout=UNARY_DEADLINE_S)).chat
        _require_member(request.user_id, chat)
    llm_id = request.llm_id or message.llm_id
    if not llm_id:
        raise InvalidArgument(f"message {message.message_id!r} was written by a user: give llm_id to choose "
                              "the model that answers", reason="LLM_ID_REQUIRED", messageId=message.message_id)
    llm = (await llms.GetLlm(llm_pb2.GetLlmRequest(llm_id=llm_id), timeout=UNARY_DEADLINE_S)).llm
    history = await _history(run, llm, message.chat_id, before_message_id=message.message_id, reserved=0)
    if not history:
        raise FailedPrecondition(f"no message precedes message {message.message_id!r}: there is nothing to answer",
                                 reason="NOTHING_TO_REGENERATE", messageId=message.message_id)
    final = await _generate(run, llm, history)
    stored = await chats.AppendMessages(chat_pb2.AppendMessagesRequest(
        request_id=run.request_id("append-messages"),
        chat_id=message.chat_id,
        messages=[chat_pb2.NewMessage(user_id=request.user_id or message.user_id, llm_id=llm.llm_id, content=final.content,
                                      role=chat_pb2.MESSAGE_ROLE_ASSISTANT)],
    ), timeout=UNARY_DEADLINE_S)
    return _response(stored.messages[-1], final)


def _require_member(user_id: str, chat: chat_pb2.Chat) -> None:
    if user_id not in chat.user_ids:
        raise PermissionDenied(f"user {user_id!r} is not a member of chat {chat.chat_id!r}",
                               reason="NOT_A_CHAT_MEMBER", userId=user_id, chatId=chat.chat_id)


def _value(answer):
    """A gathered answer, or its exception raised."""
    if isinstance(answer, BaseException):
        raise answer
    return answer


async def _history(run: Run, llm: llm_pb2.Llm, chat_id: str, before_message_id: str,
                   reserved: int) -> list[llm_pb2.ConversationMessage]:
    """The newest messages that fit the model's context limits, oldest first."""
    max_messages = llm.context_max_messages - reserved
    if max_messages <= 0:  # 0 would mean "the default" to the chat unit
        return []
    response = await run.channels.chats.ListRecentMessages(chat_pb2.ListRecentMessagesRequest(
        chat_id=chat_id, before_message_id=before_message_id, max_messages=max_messages,
        max_chars=llm.context_max_chars,
    ), timeout=UNARY_DEADLINE_S)
    return [llm_pb2.ConversationMessage(role=_ROLE_NAMES.get(message.role, "user"), content=message.content)
            for message in response.messages]


async def _generate(run: Run, llm: llm_pb2.Llm,
                    conversation: list[llm_pb2.ConversationMessage]) -> llm_pb2.FinalReply:
    """Streams the reply, passing each delta on as progress; returns the final message."""
    call = run.channels.llms.GenerateReply(llm_pb2.GenerateReplyRequest(
        llm_id=llm.llm_id, provider_id=llm.provider_id, messages=conversation,
    ), timeout=GENERATION_DEADLINE_S)
    final = None
    try:
        async for event in call:
            kind = event.WhichOneof("event")
            if kind == "delta":
                await run.progress(delta=event.delta)
            elif kind == "final":
                final = event.final
    finally:
        call.cancel()  # no-op once the call has ended; stops the provider when we leave early
    if final is None:
        raise Internal("the LLM unit ended the reply without its final message", reason="INCOMPLETE_REPLY")
    return final


def _response(message: chat_pb2.Message, final: llm_pb2.FinalReply) -> Payload:
    return {"llm_response": orchestrator_pb2.LlmResponse(message=message, usage=final.usage,
                                                         finish_reason=final.finish_reason)}


HANDLERS = {
    "llm_response_generate": generate,
    "llm_response_regenerate": regenerate,
}
