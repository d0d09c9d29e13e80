"""OrchestratorService.Submit over RabbitMQ: the accepted event, live deltas, the final result,
cancellation, answers from the ledger (reads read again), and replicas that run each other's instructions."""

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb
from services.common.errors import error_info


async def setup_model(stub, submit, suite, llm_name: str) -> dict:
    """A user, a chat of theirs and a model of the stand-in provider; returns their ids."""
    user_id = (await submit(stub, pb.Instruction(user_create=pb.UserCreate(username="ada"))))[-1].user.user_id
    chat_id = (await submit(stub, pb.Instruction(chat_create=pb.ChatCreate(
        title="t", user_ids=[user_id]))))[-1].chat.chat.chat_id
    provider_id = (await submit(stub, pb.Instruction(llm_provider_add=pb.LlmProviderAdd(
        name="stand-in", api_endpoint=suite.provider.openai_url))))[-1].provider.provider_id
    llm_id = (await submit(stub, pb.Instruction(llm_add=pb.LlmAdd(
        provider_id=provider_id, llm_name=llm_name))))[-1].llm.llm_id
    return {"user_id": user_id, "chat_id": chat_id, "llm_id": llm_id}


def generate(ids: dict, text: str = "hello", instruction_id: str = "") -> pb.SubmitRequest:
    return pb.SubmitRequest(instruction=pb.Instruction(instruction_id=instruction_id, llm_response_generate=pb.LlmResponseGenerate(
        user_input=text, **ids)))


async def test_submit_streams_accepted_then_deltas_while_generating_then_the_result(
        suite, orchestrators, amqp_url, submit_stub, submit):
    server = await orchestrators(suite, amqp_url)
    async with submit_stub(server) as stub:
        ids = await setup_model(stub, submit, suite, "paced@tokens=20,interval_ms=50")
        events, provider_busy_at_first_delta = [], None
        async for response in stub.Submit(generate(ids), timeout=60):
            if response.result.HasField("delta") and provider_busy_at_first_delta is None:
                provider_busy_at_first_delta = suite.provider.stats.in_flight
            events.append(response.result)

    assert events[0].sequence == 0 and events[0].HasField("accepted")
    assert events[0].instruction_type == pb.INSTRUCTION_TYPE_LLM_RESPONSE_GENERATE
    deltas, final = events[1:-1], events[-1]
    assert deltas and all(e.HasField("delta") and not e.final for e in deltas)
    assert provider_busy_at_first_delta > 0  # the first delta came while the provider was still generating
    assert final.final and final.status.code == 0
    assert "".join(e.delta.content for e in deltas) == final.llm_response.message.content
    assert final.llm_response.message.content == "".join(f"t{i} " for i in range(20))
    assert [e.sequence for e in events] == list(range(len(events)))
    assert len({e.instruction_id for e in events}) == 1


async def test_cancelling_the_call_cancels_the_generation(suite, orchestrators, amqp_url, submit_stub, submit,
                                                          eventually):
    server = await orchestrators(suite, amqp_url)
    async with submit_stub(server) as stub:
        ids = await setup_model(stub, submit, suite, "endless@tokens=2000,interval_ms=20")
        call = stub.Submit(generate(ids), timeout=60)
        async for response in call:
            if response.result.HasField("delta"):
                break
        call.cancel()
        await eventually(lambda: suite.provider.stats.client_disconnected == 1, what="provider call cancelled")
        assert suite.provider.stats.completed == 0
        loaded = (await submit(stub, pb.Instruction(chat_load=pb.ChatLoad(chat_id=ids["chat_id"]))))[-1]
        assert list(loaded.chat.messages) == []  # nothing of the cancelled turn was stored


async def test_an_instruction_id_already_stored_is_answered_without_running_again(
        suite, orchestrators, amqp_url, submit_stub, submit):
    server = await orchestrators(suite, amqp_url)
    instruction = pb.Instruction(instruction_id="create-ada-once", user_create=pb.UserCreate(username="ada"))
    async with submit_stub(server) as stub:
        first = await submit(stub, instruction)
        again = await submit(stub, instruction)
    assert first[-1].user == again[-1].user and again[-1].status.code == 0
    assert [e.sequence for e in again] == [0, 1]
    assert [user.username for user in await suite.users()] == ["ada"]


async def test_a_read_id_submitted_again_reads_again(suite, orchestrators, amqp_url, submit_stub, submit):
    server = await orchestrators(suite, amqp_url)
    read = pb.Instruction(instruction_id="read-users-once", user_list=pb.UserList())
    async with submit_stub(server) as stub:
        before = await submit(stub, read)
        await submit(stub, pb.Instruction(user_create=pb.UserCreate(username="ada")))
        again = await submit(stub, read)
    assert list(before[-1].users.users) == []
    assert [user.username for user in again[-1].users.users] == ["ada"]
    assert [e.sequence for e in again] == [0, 1] and again[-1].status.code == 0


async def test_a_replica_streams_results_of_its_instruction_run_by_another_replica(
        suite, orchestrators, amqp_url, submit_stub, submit):
    front = await orchestrators(suite, amqp_url)
    await orchestrators(suite, amqp_url)  # the worker
    await front.transport.stop_consuming()  # so the worker runs everything the front door queues
    async with submit_stub(front) as stub:
        ids = await setup_model(stub, submit, suite, "paced@tokens=40,interval_ms=10")
        events = [r.result async for r in stub.Submit(generate(ids), timeout=60)]

    final = events[-1]
    assert final.final and final.status.code == 0
    deltas = [e for e in events[1:-1] if e.HasField("delta")]
    # Remote deltas come batched (one message per ~50 ms), never one broker message per token.
    assert 0 < len(deltas) < 40
    assert "".join(e.delta.content for e in deltas) == final.llm_response.message.content
    assert [e.sequence for e in events] == list(range(len(events)))


async def test_an_instruction_of_no_type_is_refused_before_queueing(suite, orchestrators, amqp_url, submit_stub):
    server = await orchestrators(suite, amqp_url)
    async with submit_stub(server) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stub.Submit(pb.SubmitRequest(instruction=pb.Instruction(instruction_id="x")), timeout=10):
                pass
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "MALFORMED_INSTRUCTION"


async def test_the_front_door_serves_health_and_reflection(suite, orchestrators, amqp_url):
    server = await orchestrators(suite, amqp_url)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        response = await health.Check(health_pb2.HealthCheckRequest(
            service="llmchatlinker.orchestrator.v1.OrchestratorService"), timeout=10)
        assert response.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        requests = iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        async for answer in reflection.ServerReflectionInfo(requests, timeout=10):
            names = {service.name for service in answer.list_services_response.service}
            assert "llmchatlinker.orchestrator.v1.OrchestratorService" in names


async def test_a_result_published_while_the_front_doors_reply_queue_was_gone_still_reaches_its_caller(
        suite, orchestrators, amqp_url, proxy, submit_stub, submit):
    # The reply queue is exclusive to the front door's connection: while the connection is down the
    # queue is gone, and a reply published then is lost. The stored result is looked up instead.
    front = await orchestrators(suite, proxy.url)
    await orchestrators(suite, amqp_url)  # the worker
    await front.transport.stop_consuming()
    async with submit_stub(front) as stub:
        ids = await setup_model(stub, submit, suite, "paced@tokens=20,interval_ms=50")
        call = stub.Submit(generate(ids, instruction_id="through-the-gap"), timeout=60)
        async for response in call:
            if response.result.HasField("delta"):
                break
        await proxy.refuse()  # the front door's connection, and with it its reply queue, gone
        while suite.provider.stats.completed == 0:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the worker stores the result and publishes it to no queue
        await proxy.accept_again()
        events = [response.result async for response in call]
    assert events[-1].final and events[-1].status.code == 0
    assert events[-1].llm_response.message.content == "".join(f"t{i} " for i in range(20))
