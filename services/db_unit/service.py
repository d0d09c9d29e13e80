"""The db unit's rules: what a valid record and result are, and how records are listed and deleted."""

import dataclasses
import datetime
from typing import Protocol

from services.common import paging
from services.common.errors import InvalidArgument
from services.db_unit.errors import ResultNotFound

MAX_ID = 128
MAX_INSTRUCTION = 64
MAX_OUTCOME = 32
MAX_RESULT_BYTES = 16 * 1024 * 1024
MAX_REQUEST_ID = 128


class Record(Protocol):
    """A stored record, as the rules see it."""

    seq: int
    record_id: str
    user_id: str
    chat_id: str
    instruction: str
    instruction_id: str
    outcome: str
    created_at: datetime.datetime
    updated_at: datetime.datetime


class Result(Protocol):
    """A stored result: the serialized bytes and when they were stored."""

    result: bytes
    created_at: datetime.datetime


class Records(Protocol):
    """The live records: store.Records over a transaction, or a fake in tests."""

    def add(self, new: "NewRecord") -> Record: ...
    def page(self, user_id: str, after: int | None, limit: int) -> list[Record]: ...
    def delete_all(self, user_id: str) -> int: ...


class Results(Protocol):
    """The result ledger: store.Results over a transaction, or a fake in tests."""

    def put(self, instruction_id: str, result: bytes) -> tuple[Result, bool]: ...
    def get(self, instruction_id: str) -> Result | None: ...


@dataclasses.dataclass(frozen=True)
class NewRecord:
    user_id: str
    chat_id: str
    instruction: str
    instruction_id: str
    outcome: str


def _check(field: str, value: str, maximum: int, required: bool = False) -> str:
    if required and not value:
        raise InvalidArgument(f"{field} must not be empty", reason=f"MISSING_{field.upper()}")
    if len(value) > maximum:
        raise InvalidArgument(
            f"{field} must be at most {maximum} characters (got {len(value)})", reason=f"{field.upper()}_TOO_LONG"
        )
    return value


def check_request_id(request_id: str) -> None:
    _check("request_id", request_id, MAX_REQUEST_ID)


def check_user_id(user_id: str) -> str:
    return _check("user_id", user_id, MAX_ID, required=True)


def check_instruction_id(instruction_id: str) -> str:
    return _check("instruction_id", instruction_id, MAX_ID, required=True)


def new_record(user_id: str, chat_id: str, instruction: str, instruction_id: str, outcome: str) -> NewRecord:
    return NewRecord(
        user_id=check_user_id(user_id),
        chat_id=_check("chat_id", chat_id, MAX_ID),
        instruction=_check("instruction", instruction, MAX_INSTRUCTION, required=True),
        instruction_id=_check("instruction_id", instruction_id, MAX_ID),
        outcome=_check("outcome", outcome, MAX_OUTCOME),
    )


def check_result(result: bytes) -> bytes:
    if len(result) > MAX_RESULT_BYTES:
        raise InvalidArgument(
            f"result must be at most {MAX_RESULT_BYTES:,} bytes (16 MiB; got {len(result):,})",
            reason="RESULT_TOO_LARGE",
        )
    return result


def list_records(records: Records, user_id: str, page_size: int, page_token: str) -> tuple[list[Record], str]:
    """One page of the user's live records, oldest first, and the next page's token ("" on the last page).

    An unknown user simply has no records: this unit does not know who exists.
    """
    user_id = check_user_id(user_id)
    limit = paging.page_size(page_size)
    after = paging.decode_token(page_token)
    rows = records.page(user_id, after, limit + 1)
    if len(rows) <= limit:
        return rows, ""
    return rows[:limit], paging.encode_token(rows[limit - 1].seq)


def put_result(results: Results, instruction_id: str, result: bytes) -> tuple[Result, bool]:
    """Stores a result unless one is already stored; returns the stored one and whether it was there first."""
    return results.put(check_instruction_id(instruction_id), check_result(result))


def get_result(results: Results, instruction_id: str) -> Result:
    stored = results.get(check_instruction_id(instruction_id))
    if stored is None:
        raise ResultNotFound(instruction_id)
    return stored
