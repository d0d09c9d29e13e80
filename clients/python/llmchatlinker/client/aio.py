"""The asyncio variant of the typed client, on grpc.aio."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc
from google.protobuf.message import Message

from llmchatlinker.client import settings
from llmchatlinker.client.errors import LLMChatLinkerError, stream_ended_early
from llmchatlinker.client.instructions import as_instruction, is_ok, refuse_blank_input, report_waiting
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2_grpc as pb_grpc


class AsyncClient:
    """Client's methods as coroutines and async iterators; create it inside the event loop."""

    def __init__(self, address: str | None = None, *, timeout: float | None = None,
                 credentials: grpc.ChannelCredentials | None = None, api_key: str | None = None) -> None:
        self.address = settings.address(address)
        self.timeout = settings.timeout(timeout)
        self._metadata = settings.key_metadata(settings.api_key(api_key))
        options = list(settings.CHANNEL_OPTIONS)
        if credentials is None:
            self._channel = grpc.aio.insecure_channel(self.address, options=options)
        else:
            self._channel = grpc.aio.secure_channel(self.address, credentials, options=options)
        self._stub = pb_grpc.OrchestratorServiceStub(self._channel)

    async def submit(self, instruction: Message, *, timeout: float | None = None) -> pb.Result:
        """Runs one instruction and returns its final, OK result; raises LLMChatLinkerError."""
        final = await self.final_result(instruction, timeout=timeout)
        if not is_ok(final):
            raise LLMChatLinkerError.from_status(final.status)
        return final

    async def stream(self, instruction: Message, *, timeout: float | None = None) -> AsyncIterator[pb.Result]:
        """`async for` over every result event; a non-OK final result is raised, not yielded."""
        async with contextlib.aclosing(self.events(instruction, timeout=timeout)) as events:
            async for result in events:
                if result.final and not is_ok(result):
                    raise LLMChatLinkerError.from_status(result.status)
                yield result

    async def final_result(self, instruction: Message, *, timeout: float | None = None) -> pb.Result:
        """The final result, OK or not (it raises only when the call itself fails)."""
        async with contextlib.aclosing(self.events(instruction, timeout=timeout)) as events:
            async for result in events:
                if result.final:
                    return result
        raise AssertionError("unreachable: events() ends with a final result or raises")

    async def events(self, instruction: Message, *, timeout: float | None = None) -> AsyncIterator[pb.Result]:
        """Every result event, the final one included whatever its status."""
        request = pb.SubmitRequest(instruction=as_instruction(instruction))
        refuse_blank_input(request.instruction)
        call = self._stub.Submit(request, timeout=self.timeout if timeout is None else timeout,
                                 metadata=self._metadata)
        told_waiting = False
        try:
            async for response in call:
                told_waiting = told_waiting or report_waiting(response.result)
                yield response.result
                if response.result.final:
                    return
        except grpc.RpcError as error:
            raise LLMChatLinkerError.from_rpc_error(error, self.address) from None
        finally:
            call.cancel()
        raise stream_ended_early(self.address)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
