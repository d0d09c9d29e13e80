"""Per-user generation limits: which apply, the windows they count in, and what a refusal says.

A user's own limits, else the suite's defaults; 0 is no limit. Requests count in minute windows,
tokens in UTC days and calendar months. The counts live in the database (store.py), so every
replica of the llm_unit enforces the same limits.
"""

import dataclasses
import datetime
import enum
import math
from collections.abc import Iterable

from services.common.errors import ResourceExhausted
from services.common.limits import MAX_ID_CHARS
from services.llm_unit import errors, service

MAX_REQUESTS_PER_MINUTE = 1_000_000
MAX_TOKENS = 2_000_000_000


class Window(enum.Enum):
    MINUTE = "minute"
    DAY = "day"
    MONTH = "month"


@dataclasses.dataclass(frozen=True)
class Limits:
    """0: no limit."""

    requests_per_minute: int = 0
    tokens_per_day: int = 0
    tokens_per_month: int = 0

    @property
    def any(self) -> bool:
        return bool(self.requests_per_minute or self.tokens_per_day or self.tokens_per_month)


@dataclasses.dataclass(frozen=True)
class OwnLimits:
    """A user's own limits as stored; None: the suite's default."""

    requests_per_minute: int | None = None
    tokens_per_day: int | None = None
    tokens_per_month: int | None = None

    def over(self, defaults: Limits) -> Limits:
        return Limits(*(default if own is None else own
                        for own, default in zip(dataclasses.astuple(self), dataclasses.astuple(defaults))))


def own_limits(user_id: str, requests_per_minute: int | None, tokens_per_day: int | None,
               tokens_per_month: int | None) -> OwnLimits:
    user_id_of(user_id)
    return OwnLimits(
        _bounded(requests_per_minute, MAX_REQUESTS_PER_MINUTE, "requests_per_minute"),
        _bounded(tokens_per_day, MAX_TOKENS, "tokens_per_day"),
        _bounded(tokens_per_month, MAX_TOKENS, "tokens_per_month"),
    )


def user_id_of(user_id: str) -> str:
    if not user_id or len(user_id) > MAX_ID_CHARS:
        raise errors.invalid(f"user_id must be 1 to {MAX_ID_CHARS} characters", "INVALID_USER_ID")
    return user_id


def _bounded(value: int | None, maximum: int, field: str) -> int | None:
    if value is not None and not 0 <= value <= maximum:
        raise errors.invalid(f"{field} must be between 0 and {maximum:,} (got {value:,})", "INVALID_LIMIT")
    return value


def window_start(window: Window, now: datetime.datetime) -> datetime.datetime:
    now = now.astimezone(datetime.timezone.utc)
    if window is Window.MINUTE:
        return now.replace(second=0, microsecond=0)
    if window is Window.DAY:
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def window_end(window: Window, now: datetime.datetime) -> datetime.datetime:
    start = window_start(window, now)
    if window is Window.MINUTE:
        return start + datetime.timedelta(minutes=1)
    if window is Window.DAY:
        return start + datetime.timedelta(days=1)
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


_REFUSALS = {
    Window.MINUTE: ("USER_RATE_LIMITED", "generations per minute"),
    Window.DAY: ("USER_DAILY_TOKENS_EXHAUSTED", "tokens per day"),
    Window.MONTH: ("USER_MONTHLY_TOKENS_EXHAUSTED", "tokens per month"),
}


def refusal(user_id: str, window: Window, limit: int, now: datetime.datetime) -> ResourceExhausted:
    """The answer to a generation over a limit: which, and when the user may try again."""
    reason, what = _REFUSALS[window]
    retry = window_end(window, now)
    seconds = max(0, math.ceil((retry - now).total_seconds()))
    stamp = retry.isoformat().replace("+00:00", "Z")
    return ResourceExhausted(f"user {user_id[:64]!r} has used their {limit:,} {what}; try again at {stamp}",
                             reason=reason, retryTime=stamp, retryAfterSeconds=str(seconds))


def token_totals(records: Iterable[service.Usage]) -> dict[tuple[str, Window, datetime.datetime], int]:
    """The tokens of `records` per (user, window, window start), for the day and month counters."""
    totals: dict[tuple[str, Window, datetime.datetime], int] = {}
    for record in records:
        if not record.user_id:
            continue
        for window in (Window.DAY, Window.MONTH):
            key = (record.user_id, window, window_start(window, record.ended_at))
            totals[key] = totals.get(key, 0) + record.prompt_tokens + record.completion_tokens
    return totals
