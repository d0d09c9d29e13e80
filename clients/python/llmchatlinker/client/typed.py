"""The typed client for new code: protobuf Instructions in, Results out, over gRPC."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import grpc
from google.protobuf.message import Message

from llmchatlinker.client import settings
from llmchatlinker.client.errors import LLMChatLinkerError, stream_ended_early
from llmchatlinker.client.instructions import as_instruction, is_ok, refuse_blank_input, report_waiting
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2_grpc as pb_grpc


def open_channel(address: str, credentials: grpc.ChannelCredentials | None) -> grpc.Channel:
    options = list(settings.CHANNEL_OPTIONS)
    if credentials is None:
        return grpc.insecure_channel(address, options=options)
    return grpc.secure_channel(address, credentials, options=options)


class Client:
    """Submits instructions to the orchestrator's front door.

    `address` defaults to $LLMCHATLINKER_ORCHESTRATOR_ADDR, then 127.0.0.1:50051; `timeout` (seconds
    per instruction) to $LLMCHATLINKER_CLIENT_TIMEOUT, then 300; `api_key` (the caller key) to
    $LLMCHATLINKER_API_KEY, then none. Pass `credentials` for TLS. Every
    method raises LLMChatLinkerError for a non-OK result or a failed call. Thread-safe; one client
    holds one channel, so keep it and close it when done (or use `with`).
    """

    def __init__(self, address: str | None = None, *, timeout: float | None = None,
                 credentials: grpc.ChannelCredentials | None = None, api_key: str | None = None) -> None:
        self.address = settings.address(address)
        self.timeout = settings.timeout(timeout)
        self._metadata = settings.key_metadata(settings.api_key(api_key))
        self._channel = open_channel(self.address, credentials)
        self._stub = pb_grpc.OrchestratorServiceStub(self._channel)

    def submit(self, instruction: Message, *, timeout: float | None = None) -> pb.Result:
        """Runs one instruction (an Instruction or a typed request such as UserCreate) and returns
        its final, OK result."""
        final = self.final_result(instruction, timeout=timeout)
        if not is_ok(final):
            raise LLMChatLinkerError.from_status(final.status)
        return final

    def stream(self, instruction: Message, *, timeout: float | None = None) -> Iterator[pb.Result]:
        """Yields every result event as it arrives: accepted, progress (token deltas), final.

        A non-OK final result is raised instead of yielded. Leaving the loop early cancels the
        call, and with it the work still cancellable (an LLM generation).
        """
        with contextlib.closing(self.events(instruction, timeout=timeout)) as events:
            for result in events:
                if result.final and not is_ok(result):
                    raise LLMChatLinkerError.from_status(result.status)
                yield result

    def final_result(self, instruction: Message, *, timeout: float | None = None) -> pb.Result:
        """The final result, OK or not (it raises only when the call itself fails)."""
        with contextlib.closing(self.events(instruction, timeout=timeout)) as events:
            for result in events:
                if result.final:
                    return result
        raise AssertionError("unreachable: events() ends with a final result or raises")

    def events(self, instruction: Message, *, timeout: float | None = None) -> Iterator[pb.Result]:
        """Every result event, the final one included whatever its status."""
        request = pb.SubmitRequest(instruction=as_instruction(instruction))
        refuse_blank_input(request.instruction)
        call = self._stub.Submit(request, timeout=self.timeout if timeout is None else timeout,
                                 metadata=self._metadata)
        told_waiting = False
        try:
            for response in call:
                told_waiting = told_waiting or report_waiting(response.result)
                yield response.result
                if response.result.final:
                    return
        except grpc.RpcError as error:
            raise LLMChatLinkerError.from_rpc_error(error, self.address) from None
        finally:
            call.cancel()  # a no-op once the stream has ended; stops the work when abandoned
        raise stream_ended_early(self.address)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
