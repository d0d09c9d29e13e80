"""Health tells the truth: the orchestrator reports NOT_SERVING while it cannot consume (the broker
gone) or while every instruction slot is stuck, and SERVING again once it can; a replica standing
by for the one that takes the instructions is SERVING."""

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as pb
from services.orchestrator import server as orchestrator_server

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def health_becomes(port: int, status, timeout: float = 40) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        seen = None
        for _ in range(int(timeout / 0.1)):
            seen = (await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)).status
            if seen == status:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"health stayed {health_pb2.HealthCheckResponse.ServingStatus.Name(seen)}")


async def test_not_serving_while_the_broker_is_gone_and_serving_once_it_is_back(suite, orchestrators, proxy):
    server = await orchestrators(suite, proxy.url)
    await health_becomes(server.port, SERVING)

    await proxy.refuse()
    await health_becomes(server.port, NOT_SERVING)
    await proxy.accept_again()
    await health_becomes(server.port, SERVING)


async def test_not_serving_while_every_slot_is_stuck(suite, orchestrators, submit_stub, monkeypatch):
    monkeypatch.setattr(orchestrator_server, "STUCK_AFTER_SECONDS", 0.5)
    server = await orchestrators(suite, None, max_in_flight=1)
    async with submit_stub(server) as stub:
        provider = (await _final(stub, pb.Instruction(llm_provider_add=pb.LlmProviderAdd(
            name="slow", api_endpoint=suite.provider.openai_url)))).provider
        llm = (await _final(stub, pb.Instruction(llm_add=pb.LlmAdd(
            provider_id=provider.provider_id, llm_name="m@latency_ms=4000")))).llm
        user = (await _final(stub, pb.Instruction(user_create=pb.UserCreate(username="waiter")))).user
        chat = (await _final(stub, pb.Instruction(chat_create=pb.ChatCreate(title="t", user_ids=[user.user_id])))).chat
        await health_becomes(server.port, SERVING)

        slow = asyncio.ensure_future(_final(stub, pb.Instruction(llm_response_generate=pb.LlmResponseGenerate(
            user_id=user.user_id, chat_id=chat.chat.chat_id, llm_id=llm.llm_id, user_input="take your time"))))
        await health_becomes(server.port, NOT_SERVING, timeout=3.5)
        assert (await slow).status.code == 0
        await health_becomes(server.port, SERVING)


async def _final(stub, instruction: pb.Instruction) -> pb.Result:
    results = [response.result async for response in stub.Submit(pb.SubmitRequest(instruction=instruction), timeout=60)]
    return results[-1]


async def test_a_replica_standing_by_serves_its_front_door_and_takes_over_when_the_taker_stops(
        suite, orchestrators, submit_stub, amqp_url):
    taker = await orchestrators(suite, amqp_url)
    standing_by = await orchestrators(suite, amqp_url)
    assert taker.transport.consuming and not standing_by.transport.consuming
    assert standing_by.transport.standing_by
    await health_becomes(standing_by.port, SERVING)

    async with submit_stub(standing_by) as stub:  # queued here, run by the taker, answered here
        created = await _final(stub, pb.Instruction(user_create=pb.UserCreate(username="standby")))
        assert created.status.code == 0 and created.user.username == "standby"

        await taker.stop(grace=5)
        for _ in range(100):
            if standing_by.transport.consuming:
                break
            await asyncio.sleep(0.05)
        assert standing_by.transport.consuming
        found = await _final(stub, pb.Instruction(user_get=pb.UserGet(user_id=created.user.user_id)))
        assert found.user.username == "standby"
