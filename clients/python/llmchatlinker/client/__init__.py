"""Python clients of LLMChatLinker.

- `LLMChatLinkerClient`: the original client's methods and reply dicts, over gRPC (default) or AMQP.
- `Client` / `AsyncClient`: typed protobuf Instructions in, Results out, for new code.
- `LLMChatLinkerError`: the one exception, carrying a gRPC status code, message and reason.
- `Reply`: the legacy reply dict, with `ok`, `code`, `reason` and `value`.
- `resource(result)` / `items(result)`: flat views of a typed Result.
"""

from llmchatlinker.client.aio import AsyncClient
from llmchatlinker.client.errors import LLMChatLinkerError
from llmchatlinker.client.instructions import as_instruction
from llmchatlinker.client.legacy import LLMChatLinkerClient
from llmchatlinker.client.replies import Reply
from llmchatlinker.client.typed import Client
from llmchatlinker.client.views import items, resource

__all__ = ["AsyncClient", "Client", "LLMChatLinkerClient", "LLMChatLinkerError", "Reply", "as_instruction",
           "items", "resource"]
