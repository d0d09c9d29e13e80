"""The suite's front door as a chat front-end uses it: OrchestratorService.Submit over grpc.aio."""

from __future__ import annotations

import uuid

import grpc
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2_grpc as pb_grpc

from bench.timeline import Timeline, now

CALL_TIMEOUT_S = 300.0


class InstructionFailed(RuntimeError):
    def __init__(self, result: pb.Result) -> None:
        status = result.status
        super().__init__(f"{pb.InstructionType.Name(result.instruction_type)}: code {status.code} "
                         f"{status.reason} {status.message}")
        self.result = result


def channel(address: str, own_connection: bool = False) -> grpc.aio.Channel:
    """A channel; with own_connection it does not share a TCP connection with other channels."""
    options = [("grpc.max_receive_message_length", 32 * 2**20)]
    if own_connection:
        options.append(("grpc.use_local_subchannel_pool", 1))
    return grpc.aio.insecure_channel(address, options=options)


class SubmitClient:
    def __init__(self, grpc_channel: grpc.aio.Channel) -> None:
        self._stub = pb_grpc.OrchestratorServiceStub(grpc_channel)

    async def run(self, **instruction: object) -> pb.Result:
        """Submit one instruction (a oneof field name and its message) and return the final result."""
        request = pb.SubmitRequest(instruction=pb.Instruction(instruction_id=uuid.uuid4().hex, **instruction))
        final = None
        async for event in self._stub.Submit(request, timeout=CALL_TIMEOUT_S):
            if event.result.final:
                final = event.result
        if final is None:
            raise RuntimeError("Submit stream ended without a final result")
        if final.status.code != 0:
            raise InstructionFailed(final)
        return final

    async def generate(self, user_id: str, chat_id: str, llm_id: str, user_input: str) -> Timeline:
        """LLM_RESPONSE_GENERATE, timing each delta as it reaches us."""
        timeline = Timeline()
        request = pb.SubmitRequest(instruction=pb.Instruction(
            instruction_id=uuid.uuid4().hex,
            llm_response_generate=pb.LlmResponseGenerate(user_id=user_id, chat_id=chat_id, llm_id=llm_id,
                                                         user_input=user_input)))
        try:
            async for event in self._stub.Submit(request, timeout=CALL_TIMEOUT_S):
                result = event.result
                if result.WhichOneof("payload") == "delta":
                    timeline.text_arrived(result.delta.content, now())
                elif result.final:
                    if result.status.code != 0:
                        return timeline.finish(f"code {result.status.code} {result.status.reason}: "
                                               f"{result.status.message[:200]}")
                    if timeline.first is None:
                        # A relay that sends no deltas: the whole text arrives with the result.
                        timeline.text_arrived(result.llm_response.message.content, now())
        except grpc.aio.AioRpcError as exc:
            return timeline.finish(f"{exc.code().name}: {exc.details()}")
        return timeline.finish()
