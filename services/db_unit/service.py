"""The db unit's rules: what a valid record and result are, how records are listed and deleted, how results are kept."""

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from typing import Protocol

from services.common import paging
from services.common.errors import InvalidArgument
from services.common.limits import MAX_ID_CHARS
from services.db_unit.errors import ResultNotFound

MAX_INSTRUCTION = 64
MAX_OUTCOME = 32
MAX_RESULT_BYTES = 16 * 1024 * 1024
# Entries of one PutResults or GetResults call.
MAX_BATCH = 1_000


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
    """A stored result: its instruction, the serialized bytes and when they were stored."""

    instruction_id: str
    result: bytes
    created_at: datetime.datetime
    # The orchestrator's digest of the request the result answers; b"" when none was given.
    request_digest: bytes


class Records(Protocol):
    """The live records: store.Records over a transaction, or a fake in tests."""

    def add(self, new: "NewRecord") -> Record: ...
    def page(self, user_id: str, after: int | None, limit: int) -> list[Record]: ...
    def delete_all(self, user_id: str) -> int: ...


class Results(Protocol):
    """The result ledger: store.Results over a transaction, or a fake in tests."""

    def put(self, new: dict[str, bytes], digests: Mapping[str, bytes] = {}) -> dict[str, Result]:  # noqa: B006
        """Stores each result (and its request's digest) whose instruction has none stored;
        returns the stored results of the others."""
        ...

    def get(self, instruction_ids: Sequence[str]) -> list[Result]:
        """The stored results among the ids, in any order."""
        ...


@dataclasses.dataclass(frozen=True)
class NewRecord:
    user_id: str
    chat_id: str
    instruction: str
    instruction_id: str
    outcome: str


def _check(field: str, value: str, maximum: int, required: bool = False, name: str | None = None) -> str:
    """The value, if it fits; the message names it as `name` (an entry of a batch), the reason as `field`."""
    name = name or field
    if required and not value:
        raise InvalidArgument(f"{name} must not be empty", reason=f"MISSING_{field.upper()}")
    if len(value) > maximum:
        raise InvalidArgument(
            f"{name} must be at most {maximum} characters (got {len(value)})", reason=f"{field.upper()}_TOO_LONG"
        )
    return value


def check_request_id(request_id: str) -> None:
    _check("request_id", request_id, MAX_ID_CHARS)


def check_user_id(user_id: str) -> str:
    return _check("user_id", user_id, MAX_ID_CHARS, required=True)


def check_instruction_id(instruction_id: str, name: str = "instruction_id") -> str:
    return _check("instruction_id", instruction_id, MAX_ID_CHARS, required=True, name=name)


def new_record(user_id: str, chat_id: str, instruction: str, instruction_id: str, outcome: str) -> NewRecord:
    return NewRecord(
        user_id=check_user_id(user_id),
        chat_id=_check("chat_id", chat_id, MAX_ID_CHARS),
        instruction=_check("instruction", instruction, MAX_INSTRUCTION, required=True),
        instruction_id=_check("instruction_id", instruction_id, MAX_ID_CHARS),
        outcome=_check("outcome", outcome, MAX_OUTCOME),
    )


def check_result(result: bytes, name: str = "result") -> bytes:
    if len(result) > MAX_RESULT_BYTES:
        raise InvalidArgument(
            f"{name} must be at most {MAX_RESULT_BYTES:,} bytes (16 MiB; got {len(result):,})",
            reason="RESULT_TOO_LARGE",
        )
    return result


def _check_batch(field: str, count: int) -> None:
    if not count:
        raise InvalidArgument(f"{field} must not be empty", reason=f"MISSING_{field.upper()}")
    if count > MAX_BATCH:
        raise InvalidArgument(
            f"at most {MAX_BATCH:,} {field} per call (got {count:,})", reason=f"TOO_MANY_{field.upper()}"
        )


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


def put_result(results: Results, instruction_id: str, result: bytes,
               request_digest: bytes = b"") -> tuple[bytes, bool, bytes]:
    """Stores a result unless one is already stored; returns the stored one, whether it was there
    first, and the digest stored with it."""
    return put_results(results, [(check_instruction_id(instruction_id), check_result(result), request_digest)])[0]


def put_results(results: Results, entries: Sequence[tuple[str, bytes] | tuple[str, bytes, bytes]]
                ) -> list[tuple[bytes, bool, bytes]]:
    """Stores each (instruction id, result[, request digest]) unless its id has a result stored;
    answers each entry, in the order given, with the stored result, whether it was there first,
    and the digest stored with it.

    An id given twice is stored once: its later entries get the answer of its first, but already stored.
    """
    _check_batch("results", len(entries))
    new: dict[str, bytes] = {}
    digests: dict[str, bytes] = {}
    for index, (instruction_id, result, *digest) in enumerate(entries):
        # The checks' messages name the entry; build them only for an entry that fails.
        if not 0 < len(instruction_id) <= MAX_ID_CHARS or len(result) > MAX_RESULT_BYTES:
            check_instruction_id(instruction_id, f"results[{index}].instruction_id")
            check_result(result, f"results[{index}].result")
        if instruction_id not in new:
            new[instruction_id] = result
            digests[instruction_id] = digest[0] if digest else b""
    stored = {instruction_id: (found.result, found.request_digest)
              for instruction_id, found in results.put(new, digests).items()}
    answers = []
    for instruction_id, *_ in entries:
        first = stored.get(instruction_id)
        if first is None:
            first = stored[instruction_id] = (new[instruction_id], digests[instruction_id])
            answers.append((first[0], False, first[1]))
        else:
            answers.append((first[0], True, first[1]))
    return answers


def get_result(results: Results, instruction_id: str) -> Result:
    found = results.get([check_instruction_id(instruction_id)])
    if not found:
        raise ResultNotFound(instruction_id)
    return found[0]


def get_results(results: Results, instruction_ids: Sequence[str]) -> list[Result]:
    """The stored results among the ids, in the order first asked for; an id with none is left out."""
    _check_batch("instruction_ids", len(instruction_ids))
    for index, instruction_id in enumerate(instruction_ids):
        if not 0 < len(instruction_id) <= MAX_ID_CHARS:  # the message names the entry; build it only on failure
            check_instruction_id(instruction_id, f"instruction_ids[{index}]")
    wanted = list(dict.fromkeys(instruction_ids))
    found = {stored.instruction_id: stored for stored in results.get(wanted)}
    return [found[instruction_id] for instruction_id in wanted if instruction_id in found]
