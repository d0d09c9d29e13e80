"""A provider's API key is write-only: never in a response, an error message or a log line."""

import logging

import grpc
import pytest

from llmchatlinker.llm.v1 import llm_service_pb2 as pb
from services.llm_unit import service
from services.llm_unit.addresses import Policy
from testkit import LlmServer
from testkit.llm_unit import SECRET, add_llm, add_model, add_provider, expect_error, generate, kit_json
from testkit.ports import closed_port

FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


async def test_no_response_carries_the_key(unit):
    create = pb.CreateProviderRequest(request_id="c1", name="acme", api_endpoint="http://h/v1", api_key=SECRET)
    responses = [await unit.stub.CreateProvider(create), await unit.stub.CreateProvider(create)]
    provider_id = responses[0].provider.provider_id
    llm = await add_llm(unit.stub, provider_id)
    responses += [
        await unit.stub.GetProvider(pb.GetProviderRequest(provider_id=provider_id)),
        await unit.stub.ListProviders(pb.ListProvidersRequest()),
        await unit.stub.GetLlm(pb.GetLlmRequest(llm_id=llm.llm_id)),
        await unit.stub.ListLlms(pb.ListLlmsRequest()),
        await unit.stub.UpdateProvider(pb.UpdateProviderRequest(provider_id=provider_id, name="acme2")),
        await unit.stub.UpdateProvider(pb.UpdateProviderRequest(provider_id=provider_id, api_key=SECRET + "2")),
    ]

    for response in responses:
        assert SECRET.encode() not in response.SerializeToString()
        assert SECRET not in str(response)
    assert responses[0].provider.has_api_key and responses[-1].provider.has_api_key


async def test_invalid_key_is_refused_without_repeating_it(unit):
    bad_key = "not valid\tkey-" + SECRET

    error = await expect_error(add_provider(unit.stub, api_key=bad_key), grpc.StatusCode.INVALID_ARGUMENT,
                               "INVALID_API_KEY")

    assert SECRET not in error.details()


async def test_logs_never_show_the_key(sqlite_unit, provider_server, caplog):
    caplog.set_level(logging.DEBUG)
    url = provider_server.openai_url
    llm = await add_model(sqlite_unit.stub, url, model=f"m@require_key={SECRET}", api_key=SECRET)
    await generate(sqlite_unit.stub, llm.llm_id)
    for index, model in enumerate(["m@fail=401", "m@fail=500", f"m@tokens={SECRET}", "m@fail=garbage"]):
        failing = await add_llm(sqlite_unit.stub, llm.provider_id, model)
        with pytest.raises(grpc.aio.AioRpcError):
            await generate(sqlite_unit.stub, failing.llm_id)
    unreachable = await add_model(sqlite_unit.stub, f"http://127.0.0.1:{closed_port()}/v1", api_key=SECRET,
                                  name="down")
    with pytest.raises(grpc.aio.AioRpcError):
        await generate(sqlite_unit.stub, unreachable.llm_id)

    assert "generation failed" in caplog.text and "HTTP 401" in caplog.text and "'acme'" in caplog.text
    assert SECRET not in caplog.text
    assert all(SECRET not in str(record.args) for record in caplog.records)


def test_provider_record_repr_hides_the_key():
    record = service.new_provider("acme", "http://h/v1", None, SECRET, seal=lambda key: key,
                                  addresses=Policy(allow_private=True))

    assert SECRET not in repr(record)


async def test_moving_the_endpoint_without_the_key_is_refused_and_the_key_stays_home(sqlite_unit, provider_server):
    """The key theft of issue 13: re-point a keyed provider at a host of one's own, then generate."""
    stub = sqlite_unit.stub
    llm = await add_model(stub, provider_server.openai_url, model=f"m@require_key={SECRET}", api_key=SECRET)
    async with LlmServer() as thief:
        moved = pb.UpdateProviderRequest(provider_id=llm.provider_id, api_endpoint=thief.openai_url)

        error = await expect_error(stub.UpdateProvider(moved), FAILED_PRECONDITION, "API_KEY_NEEDED_FOR_NEW_ENDPOINT")
        await generate(stub, llm.llm_id)

        assert "supply the key again when changing the endpoint" in error.details()
        assert await kit_json(thief, "/_testkit/requests") == []
        (sent,) = await kit_json(provider_server, "/_testkit/requests")
        assert sent["authorization"] == f"Bearer {SECRET}"
        # With the key given again (here: explicitly none) the endpoint moves, and no key goes with it.
        moved.api_key = ""
        provider = (await stub.UpdateProvider(moved)).provider
        await generate(stub, (await add_llm(stub, llm.provider_id, "m2")).llm_id)
        assert provider.api_endpoint == thief.openai_url and not provider.has_api_key
        (received,) = await kit_json(thief, "/_testkit/requests")
        assert received["authorization"] is None


async def test_the_same_endpoint_again_or_a_new_one_with_its_key_is_accepted(unit):
    provider = await add_provider(unit.stub, url="http://a.example/v1", api_key=SECRET)

    same = await unit.stub.UpdateProvider(pb.UpdateProviderRequest(
        provider_id=provider.provider_id, api_endpoint="http://a.example/v1", name="renamed"))
    moved = await unit.stub.UpdateProvider(pb.UpdateProviderRequest(
        provider_id=provider.provider_id, api_endpoint="http://b.example/v1", api_key=SECRET + "-b"))

    assert same.provider.has_api_key and same.provider.name == "renamed"
    assert moved.provider.has_api_key and moved.provider.api_endpoint == "http://b.example/v1"


async def test_a_provider_without_a_key_moves_freely(unit):
    provider = await add_provider(unit.stub, url="http://a.example/v1")

    moved = await unit.stub.UpdateProvider(pb.UpdateProviderRequest(
        provider_id=provider.provider_id, api_endpoint="http://b.example/v1"))

    assert moved.provider.api_endpoint == "http://b.example/v1" and not moved.provider.has_api_key
