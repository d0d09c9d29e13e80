"""Control Unit handlers of LLM_RESPONSE_GENERATE and _REGENERATE: history, a streamed generation, storage.

Nothing is stored until the model has answered in full: a failed or cancelled generation leaves
the chat as it was. Cancelling the task that runs a handler cancels the GenerateReply call.
"""

import asyncio

from llmchatlinker.chat.v1 import chat_service_pb2 as chat_pb2
from llmchatlinker.llm.v1 import llm_service_pb2 as llm_pb2
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from services.common.errors import FailedPrecondition, Internal, InvalidArgument
from services.orchestrator.instructions.run import Payload, Run, require

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
    if not request.user_input.strip():  # the client refuses it too, with the same words
        raise InvalidArgument("user_input is blank: it must contain at least one visible character",
                              reason="INVALID_FIELD", field="user_input")
    chat_id, user_id = require(request.chat_id, "chat_id"), require(request.user_id, "user_id")
    # The user's check runs alongside the model's read (usually kept) and then the chat's read.
    user_check = asyncio.ensure_future(run.units.users.live_user(user_id))
    try:
        try:
            llm = await run.units.models.model(require(request.llm_id, "llm_id"))
        except Exception:
            # Of several errors, the chat's is reported first, then the user's, then the model's.
            await _history(run, chat_id, user_id, max_messages=1, max_chars=0)
            await user_check
            raise
        # One message of the model's budget goes to the new input.
        history = await _history(run, chat_id, user_id, max_messages=llm.context_max_messages - 1,
                                 max_chars=llm.context_max_chars)
        await user_check  # a member deleted since may no longer speak
    finally:
        if not user_check.done():
            user_check.cancel()
        elif not user_check.cancelled():
            user_check.exception()  # retrieved: an earlier error is the one reported
    if request.provider_id and request.provider_id != llm.provider_id:
        raise InvalidArgument(f"llm {llm.llm_id!r} is served by provider {llm.provider_id!r}, "
                              f"not {request.provider_id!r}", reason="LLM_PROVIDER_MISMATCH",
                              llmId=llm.llm_id, providerId=request.provider_id)

    await run.before_effects()
    final = await _generate(run, llm, history + [llm_pb2.ConversationMessage(role="user", content=request.user_input)],
                            user_id, chat_id)
    stored = await run.units.chats.append_messages(chat_pb2.AppendMessagesRequest(
        request_id=run.request_id("append-messages"),
        chat_id=chat_id,
        messages=[
            chat_pb2.NewMessage(user_id=user_id, content=request.user_input, role=chat_pb2.MESSAGE_ROLE_USER),
            chat_pb2.NewMessage(user_id=user_id, llm_id=final.llm_id or llm.llm_id, content=final.content,
                                role=chat_pb2.MESSAGE_ROLE_ASSISTANT),
        ],
    ))
    return _response(stored[-1], final)


async def regenerate(run: Run, request: orchestrator_pb2.LlmResponseRegenerate) -> Payload:
    message = (await run.units.chats.GetMessage(
        chat_pb2.GetMessageRequest(message_id=require(request.message_id, "message_id")))).message
    if request.user_id:  # a non-member is refused before anything else is said about the message
        await _history(run, message.chat_id, request.user_id, max_messages=1, max_chars=0)
    llm_id = request.llm_id or message.llm_id
    if not llm_id:
        raise InvalidArgument(f"message {message.message_id!r} was written by a user: give llm_id to choose "
                              "the model that answers", reason="LLM_ID_REQUIRED", messageId=message.message_id)
    llm = await run.units.models.model(llm_id)
    history = await _history(run, message.chat_id, "", max_messages=llm.context_max_messages,  # member: checked above
                             max_chars=llm.context_max_chars, before_message_id=message.message_id)
    if not history:
        raise FailedPrecondition(f"no message precedes message {message.message_id!r}: there is nothing to answer",
                                 reason="NOTHING_TO_REGENERATE", messageId=message.message_id)
    await run.before_effects()
    final = await _generate(run, llm, history, request.user_id or message.user_id, message.chat_id)
    stored = await run.units.chats.append_messages(chat_pb2.AppendMessagesRequest(
        request_id=run.request_id("append-messages"),
        chat_id=message.chat_id,
        messages=[chat_pb2.NewMessage(user_id=request.user_id or message.user_id, llm_id=final.llm_id or llm.llm_id,
                                      content=final.content,
                                      role=chat_pb2.MESSAGE_ROLE_ASSISTANT)],
    ))
    return _response(stored[-1], final)


async def _history(run: Run, chat_id: str, member_user_id: str, max_messages: int, max_chars: int,
                   before_message_id: str = "") -> list[llm_pb2.ConversationMessage]:
    """The newest messages that fit the model's context limits, oldest first. The chat unit checks,
    in the same call, that the chat is live and (when named) the user is one of its members."""
    messages = await run.units.chats.recent_messages(chat_pb2.ListRecentMessagesRequest(
        chat_id=chat_id, before_message_id=before_message_id, max_messages=max(max_messages, 1),
        max_chars=max_chars, member_user_id=member_user_id,
    ))
    if max_messages <= 0:  # the checks alone: the model's budget has no room for history
        return []
    return [llm_pb2.ConversationMessage(role=_ROLE_NAMES.get(message.role, "user"), content=message.content)
            for message in messages]


async def _generate(run: Run, llm: llm_pb2.Llm, conversation: list[llm_pb2.ConversationMessage], user_id: str,
                    chat_id: str) -> llm_pb2.FinalReply:
    """Streams the reply, passing each delta on as progress; returns the final message. The user and
    chat go with it for llm_unit's usage records."""
    call = run.units.models.generate_reply(llm_pb2.GenerateReplyRequest(
        llm_id=llm.llm_id, provider_id=llm.provider_id, messages=conversation, user_id=user_id, chat_id=chat_id,
    ))
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
