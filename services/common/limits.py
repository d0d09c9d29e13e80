"""Limits every service of the suite agrees on, each written once: id lengths, media types, message sizes."""

import hashlib

# Ids (users, chats, messages, providers, models, instructions) and request ids are at most this
# many characters; the units' key columns are this wide.
MAX_ID_CHARS = 128

# The largest gRPC message any server or channel of the suite sends or accepts.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024
MESSAGE_SIZE_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]

# The largest instruction body the orchestrator reads from its queue: room for the largest user
# input (1,000,000 characters, up to 4 bytes each in UTF-8) with its JSON around it.
MAX_INSTRUCTION_BODY_BYTES = 8 * 1024 * 1024
# Nesting of a legacy JSON instruction: real ones nest 3 deep ({"data": {"user_ids": [...]}}); a
# deeper body is refused before it is parsed, so no body can exhaust the parser's recursion.
MAX_JSON_DEPTH = 16

# Media types of queue messages. Both protobuf spellings are in use; JSON is the legacy form.
PROTOBUF = "application/x-protobuf"
PROTOBUF_MEDIA_TYPES = frozenset({PROTOBUF, "application/protobuf"})
JSON = "application/json"


def bounded_id(raw: str) -> str:
    """`raw` when it fits MAX_ID_CHARS, else its SHA-256: as unique, and always fits."""
    if len(raw) <= MAX_ID_CHARS:
        return raw
    return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()


def media_type(content_type: str | None) -> str:
    """The media type of a content type, without parameters, in lower case ('' for none)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_protobuf(content_type: str | None) -> bool:
    """Whether a message with this content type carries protobuf (else it is legacy JSON)."""
    return media_type(content_type) in PROTOBUF_MEDIA_TYPES
