"""The chat unit's rules: what a valid chat and message are, and how pages and LLM contexts are cut."""

import dataclasses
import datetime
import enum
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple, Protocol, TypeVar

from services.chat_unit.errors import ChatNotFound, MessageNotFound, MessageNotInChat, NotAChatMember
from services.common import paging
from services.common.errors import DomainError, InvalidArgument
from services.common.limits import MAX_ID_CHARS

TITLE_MAX_CHARS = 200
MEMBERS_MAX = 100
MESSAGES_PER_APPEND_MAX = 10
CONTENT_MAX_CHARS = 1_000_000
MESSAGE_PAGE_DEFAULT, MESSAGE_PAGE_MAX = 100, 1000
CHAT_PAGE_DEFAULT, CHAT_PAGE_MAX = 50, 1000
RECENT_DEFAULT, RECENT_MAX = 50, 10_000
ENTRIES_PER_BATCH_MAX = 1_000
# PostgreSQL text cannot hold NUL; refusing it everywhere keeps SQLite and PostgreSQL alike.
NUL = "\x00"


class Role(enum.Enum):
    """Who wrote a message; the value is what the store keeps."""

    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"


@dataclasses.dataclass(frozen=True)
class Chat:
    seq: int
    chat_id: str
    title: str
    user_ids: tuple[str, ...]
    created_at: datetime.datetime
    updated_at: datetime.datetime


@dataclasses.dataclass(frozen=True)
class NewMessage:
    user_id: str
    llm_id: str
    content: str
    # None when the caller named no role (or one this unit does not know).
    role: Role | None


class Message(NamedTuple):
    # A NamedTuple, not a frozen dataclass: one is built per row of every LLM context read,
    # and a frozen dataclass costs three times as much to build.
    seq: int
    message_id: str
    chat_id: str
    user_id: str
    llm_id: str
    content: str
    role: Role
    created_at: datetime.datetime
    updated_at: datetime.datetime


class RecentRead(NamedTuple):
    """One read of a batch: the arguments of list_recent_messages after the store."""

    chat_id: str
    before_message_id: str
    max_messages: int
    max_chars: int
    member_user_id: str


class Append(NamedTuple):
    """One append of a batch: the arguments of an AppendMessages call."""

    request_id: str
    chat_id: str
    messages: Sequence[NewMessage]


@dataclasses.dataclass(frozen=True)
class Page:
    items: list
    next_page_token: str


class Store(Protocol):
    """What the rules need from storage; store.ChatStore is the real one."""

    def add_chat(self, title: str, user_ids: Sequence[str]) -> Chat: ...
    def live_chat(self, chat_id: str) -> Chat | None: ...
    def is_live(self, chat_id: str) -> bool: ...
    def live_membership(self, chat_id: str, user_id: str) -> bool | None: ...
    def update_chat(self, chat_id: str, title: str | None) -> Chat | None: ...
    def delete_chat(self, chat_id: str) -> bool: ...
    def live_chats(self, after_seq: int | None, limit: int, member_user_id: str) -> list[Chat]: ...
    def append_messages(self, chat_id: str, messages: Sequence[NewMessage]) -> list[Message] | None: ...
    def live_message(self, message_id: str) -> Message | None: ...
    def newest_messages(self, chat_id: str, before_seq: int | None, limit: int) -> Iterator[Message]: ...
    def lock_live_chats(self, chat_ids: Iterable[str]) -> None: ...


Response = TypeVar("Response")


class Ledger(Protocol[Response]):
    """The request ids a batch transaction answers; services.common.db.BatchLedger is the real one."""

    def claim(self, request_ids: Iterable[str]) -> dict[str, Response]: ...
    def settle(self, answers: Mapping[str, Response]) -> None: ...


def check_request_id(request_id: str) -> str:
    if len(request_id) > MAX_ID_CHARS or NUL in request_id:
        raise InvalidArgument(
            f"request_id must be at most {MAX_ID_CHARS} characters, without NUL", reason="INVALID_REQUEST_ID"
        )
    return request_id


def create_chat(store: Store, title: str, user_ids: Iterable[str]) -> Chat:
    return store.add_chat(_title(title), _members(user_ids))


def update_chat(store: Store, chat_id: str, title: str | None) -> Chat:
    new_title = None if title is None else _title(title)
    chat = store.update_chat(_required_id("chat_id", chat_id), new_title)
    if chat is None:
        raise ChatNotFound(chat_id)
    return chat


def delete_chat(store: Store, chat_id: str) -> None:
    if not store.delete_chat(_required_id("chat_id", chat_id)):
        raise ChatNotFound(chat_id)


def get_chat(store: Store, chat_id: str, page_size: int, page_token: str) -> tuple[Chat, Page]:
    """The chat and one page of its messages: the newest page first, oldest first within a page."""
    size = paging.page_size(page_size, MESSAGE_PAGE_DEFAULT, MESSAGE_PAGE_MAX)
    before_seq = paging.decode_token(page_token)
    chat = store.live_chat(_required_id("chat_id", chat_id))
    if chat is None:
        raise ChatNotFound(chat_id)
    newest = list(store.newest_messages(chat_id, before_seq, size + 1))
    page = newest[:size]
    token = paging.encode_token(page[-1].seq) if len(newest) > size else ""
    return chat, Page(items=page[::-1], next_page_token=token)


def list_chats(store: Store, page_size: int, page_token: str, member_user_id: str) -> Page:
    size = paging.page_size(page_size, CHAT_PAGE_DEFAULT, CHAT_PAGE_MAX)
    if member_user_id:
        _required_id("member_user_id", member_user_id, reason="INVALID_USER_ID")
    chats = store.live_chats(paging.decode_token(page_token), size + 1, member_user_id)
    token = paging.encode_token(chats[size - 1].seq) if len(chats) > size else ""
    return Page(items=chats[:size], next_page_token=token)


def append_messages(store: Store, chat_id: str, messages: Sequence[NewMessage]) -> list[Message]:
    if not 1 <= len(messages) <= MESSAGES_PER_APPEND_MAX:
        raise InvalidArgument(
            f"append 1 to {MESSAGES_PER_APPEND_MAX} messages at a time (got {len(messages)})",
            reason="INVALID_MESSAGE_COUNT",
        )
    for index, message in enumerate(messages):
        _check_new_message(index, message)
    stored = store.append_messages(_required_id("chat_id", chat_id), messages)
    if stored is None:
        raise ChatNotFound(chat_id)
    return stored


def get_message(store: Store, message_id: str) -> Message:
    message = store.live_message(_required_id("message_id", message_id))
    if message is None:
        raise MessageNotFound(message_id)
    return message


def list_recent_messages(
    store: Store, chat_id: str, before_message_id: str, max_messages: int, max_chars: int, member_user_id: str
) -> list[Message]:
    """The newest messages that fit both budgets, oldest first: the context an LLM is sent.

    The newest message is always included. The rest are taken newest first and
    the walk stops at the first that does not fit, so the context has no gaps.
    With member_user_id, the chat is read only if that user is one of its members.
    """
    limit = _non_negative("max_messages", max_messages, "INVALID_MAX_MESSAGES")
    limit = min(limit or RECENT_DEFAULT, RECENT_MAX)
    char_budget = _non_negative("max_chars", max_chars, "INVALID_MAX_CHARS")
    _required_id("chat_id", chat_id)
    if member_user_id:
        _required_id("member_user_id", member_user_id, reason="INVALID_USER_ID")
        # One query for both checks: the orchestrator makes this call before every generation.
        is_member = store.live_membership(chat_id, member_user_id)
        if is_member is None:
            raise ChatNotFound(chat_id)
        if not is_member:
            raise NotAChatMember(member_user_id, chat_id)
    elif not store.is_live(chat_id):
        raise ChatNotFound(chat_id)
    before_seq = None
    if before_message_id:
        anchor = store.live_message(_required_id("before_message_id", before_message_id, reason="INVALID_MESSAGE_ID"))
        if anchor is None:
            raise MessageNotFound(before_message_id)
        if anchor.chat_id != chat_id:
            raise MessageNotInChat(before_message_id, chat_id)
        before_seq = anchor.seq
    picked: list[Message] = []
    used = 0
    for message in store.newest_messages(chat_id, before_seq, limit):
        if picked and char_budget and used + len(message.content) > char_budget:
            break
        picked.append(message)
        used += len(message.content)
    return picked[::-1]


def batch_list_recent_messages(store: Store, reads: Sequence[RecentRead]) -> list[list[Message] | DomainError]:
    """list_recent_messages for each read, in order, on one store (one transaction).

    A read that breaks a rule gives its DomainError in its place and leaves the others alone:
    the orchestrator reads the contexts of many generations at once, and one bad chat must
    not fail the rest. Any other exception is a fault and fails the whole batch.
    """
    _check_batch_size(len(reads))
    results: list[list[Message] | DomainError] = []
    for read in reads:
        try:
            results.append(list_recent_messages(store, *read))
        except DomainError as error:
            results.append(error)
    return results


def batch_append_messages(
    store: Store,
    ledger: Ledger[Response],
    appends: Sequence[Append],
    respond: Callable[[list[Message]], Response],
) -> list[Response | DomainError]:
    """append_messages for each append, in order, each at most once per request id, in one transaction.

    Each append gets what AppendMessages would answer in its place, as if the calls ran one after
    the other: a request id answered before (by an earlier call, or by an earlier append of the
    batch) gives its stored response and applies nothing. An append that breaks a rule gives its
    DomainError and writes nothing, so its request id stays free for a retry. Any other exception
    is a fault and fails the whole batch.
    """
    _check_batch_size(len(appends))
    results: list[Response | DomainError | None] = [None] * len(appends)
    for index, append in enumerate(appends):
        try:
            check_request_id(append.request_id)
        except DomainError as error:
            results[index] = error
    answered = ledger.claim(
        {append.request_id for append, result in zip(appends, results) if result is None and append.request_id}
    )
    # After the claims, as run_once claims before it locks the chat: the same lock order everywhere.
    store.lock_live_chats({append.chat_id for append in appends if _is_id(append.chat_id)})
    fresh: dict[str, Response] = {}
    for index, append in enumerate(appends):
        if results[index] is not None:
            continue
        if append.request_id in answered:
            results[index] = answered[append.request_id]
            continue
        try:
            # A broken rule is found before anything is written (the chat is checked by the update
            # that touches it), so a failed append needs no savepoint to be undone.
            response = respond(append_messages(store, append.chat_id, append.messages))
        except DomainError as error:
            results[index] = error
            continue
        results[index] = response
        if append.request_id:
            answered[append.request_id] = fresh[append.request_id] = response
    ledger.settle(fresh)
    return results  # type: ignore[return-value]  # every entry was filled in above


def _check_batch_size(count: int) -> None:
    if not count:
        raise InvalidArgument("requests must not be empty", reason="MISSING_REQUESTS")
    if count > ENTRIES_PER_BATCH_MAX:
        raise InvalidArgument(
            f"at most {ENTRIES_PER_BATCH_MAX:,} requests per call (got {count:,})", reason="TOO_MANY_REQUESTS"
        )


def _title(title: str) -> str:
    trimmed = title.strip()
    if not 1 <= len(trimmed) <= TITLE_MAX_CHARS or NUL in trimmed:
        raise InvalidArgument(
            f"title must be 1 to {TITLE_MAX_CHARS} characters after trimming, without NUL (got {len(trimmed)})",
            reason="INVALID_TITLE",
        )
    return trimmed


def _members(user_ids: Iterable[str]) -> list[str]:
    """The member ids in the order given, each kept once."""
    members = list(dict.fromkeys(user_ids))
    for user_id in members:
        _required_id("user_ids", user_id, reason="INVALID_USER_ID")
    if not 1 <= len(members) <= MEMBERS_MAX:
        raise InvalidArgument(
            f"a chat has 1 to {MEMBERS_MAX} distinct members (got {len(members)})", reason="INVALID_USER_IDS"
        )
    return members


def _check_new_message(index: int, message: NewMessage) -> None:
    where = f"messages[{index}]"
    if message.role is None:
        raise InvalidArgument(f"{where}.role must be USER, ASSISTANT or SYSTEM", reason="INVALID_ROLE")
    if len(message.content) > CONTENT_MAX_CHARS:
        raise InvalidArgument(
            f"{where}.content must be at most {CONTENT_MAX_CHARS} characters (got {len(message.content)})",
            reason="CONTENT_TOO_LONG",
        )
    if NUL in message.content:
        raise InvalidArgument(f"{where}.content must not contain NUL characters", reason="INVALID_CONTENT")
    for field, value in (("user_id", message.user_id), ("llm_id", message.llm_id)):
        if len(value) > MAX_ID_CHARS or NUL in value:
            raise InvalidArgument(
                f"{where}.{field} must be at most {MAX_ID_CHARS} characters, without NUL",
                reason=f"INVALID_{field.upper()}",
            )


def _is_id(value: str) -> bool:
    return bool(value.strip()) and len(value) <= MAX_ID_CHARS and NUL not in value


def _required_id(field: str, value: str, reason: str | None = None) -> str:
    if not _is_id(value):
        raise InvalidArgument(
            f"{field} must be a non-blank id of at most {MAX_ID_CHARS} characters, without NUL (got {value!r:.40})",
            reason=reason or f"INVALID_{field.upper()}",
        )
    return value


def _non_negative(field: str, value: int, reason: str) -> int:
    if value < 0:
        raise InvalidArgument(f"{field} must not be negative (got {value})", reason=reason)
    return value
