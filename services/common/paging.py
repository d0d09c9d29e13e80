"""Page sizes and opaque page tokens (AIP-158), the same for every list of the suite."""

import base64

from services.common.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
_TOKEN_PREFIX = "v1:"


def page_size(requested: int, default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE) -> int:
    """0 gives the default, larger than the maximum is capped, negative is an error."""
    if requested < 0:
        raise InvalidArgument(f"page_size must not be negative (got {requested})", reason="INVALID_PAGE_SIZE")
    return min(requested or default, maximum)


def encode_token(position: int) -> str:
    return base64.urlsafe_b64encode(f"{_TOKEN_PREFIX}{position}".encode()).decode().rstrip("=")


def decode_token(token: str) -> int | None:
    """The position a token stands for; None for the empty token (first page)."""
    if not token:
        return None
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if text.startswith(_TOKEN_PREFIX):
            return int(text[len(_TOKEN_PREFIX):])
    except ValueError:
        pass
    raise InvalidArgument("page_token is not a token this list gave out", reason="INVALID_PAGE_TOKEN")
