"""Model (Llm) CRUD over real gRPC, on SQLite and PostgreSQL."""

import grpc
import pytest

from llmchatlinker.llm.v1 import llm_service_pb2 as pb
from testkit.llm_unit import add_llm, add_provider, expect_error

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
EXISTS = grpc.StatusCode.ALREADY_EXISTS


@pytest.fixture
async def provider(unit):
    return await add_provider(unit.stub)


async def test_create_llm_uses_default_context_limits(unit, provider):
    llm = await add_llm(unit.stub, provider.provider_id, " model-a ")

    assert len(llm.llm_id) == 36
    assert (llm.name, llm.provider_id) == ("model-a", provider.provider_id)
    assert (llm.context_max_messages, llm.context_max_chars) == (50, 100_000)
    assert llm.create_time.seconds > 0


async def test_create_llm_keeps_given_limits_at_their_bounds(unit, provider):
    low = await add_llm(unit.stub, provider.provider_id, "low", context_max_messages=1, context_max_chars=1)
    high = await add_llm(unit.stub, provider.provider_id, "high", context_max_messages=10_000,
                         context_max_chars=10_000_000)

    assert (low.context_max_messages, low.context_max_chars) == (1, 1)
    assert (high.context_max_messages, high.context_max_chars) == (10_000, 10_000_000)


@pytest.mark.parametrize("fields, reason", [
    ({"name": ""}, "INVALID_LLM_NAME"),
    ({"name": "m" * 201}, "INVALID_LLM_NAME"),
    ({"context_max_messages": 0}, "INVALID_CONTEXT_LIMIT"),
    ({"context_max_messages": 10_001}, "INVALID_CONTEXT_LIMIT"),
    ({"context_max_chars": 0}, "INVALID_CONTEXT_LIMIT"),
    ({"context_max_chars": 10_000_001}, "INVALID_CONTEXT_LIMIT"),
    ({"context_max_chars": -5}, "INVALID_CONTEXT_LIMIT"),
    ({"provider_id": ""}, "MISSING_ID"),
])
async def test_create_llm_rejects_invalid_fields(unit, provider, fields, reason):
    request = pb.CreateLlmRequest(**{"provider_id": provider.provider_id, "name": "m", **fields})

    await expect_error(unit.stub.CreateLlm(request), INVALID, reason)


async def test_create_llm_on_missing_provider_is_not_found(unit):
    error = await expect_error(unit.stub.CreateLlm(pb.CreateLlmRequest(provider_id="no-such", name="m")),
                               NOT_FOUND, "PROVIDER_NOT_FOUND")
    assert "no-such" in error.details()


async def test_model_names_are_unique_per_provider_among_live_models(unit, provider):
    other = await add_provider(unit.stub, name="other")
    first = await add_llm(unit.stub, provider.provider_id, "m")

    await expect_error(add_llm(unit.stub, provider.provider_id, "m"), EXISTS, "LLM_NAME_TAKEN")
    assert (await add_llm(unit.stub, other.provider_id, "m")).provider_id == other.provider_id
    await unit.stub.DeleteLlm(pb.DeleteLlmRequest(llm_id=first.llm_id))
    assert (await add_llm(unit.stub, provider.provider_id, "m")).llm_id != first.llm_id


async def test_get_llm_returns_the_model_and_its_provider(unit, provider):
    llm = await add_llm(unit.stub, provider.provider_id)

    got = await unit.stub.GetLlm(pb.GetLlmRequest(llm_id=llm.llm_id))

    assert got.llm == llm and got.provider == provider


async def test_get_missing_llm_is_not_found_naming_the_id(unit):
    error = await expect_error(unit.stub.GetLlm(pb.GetLlmRequest(llm_id="missing-llm")), NOT_FOUND, "LLM_NOT_FOUND")
    assert "missing-llm" in error.details()
    await expect_error(unit.stub.GetLlm(pb.GetLlmRequest()), INVALID, "MISSING_ID")


async def test_update_llm_changes_only_the_fields_given(unit, provider):
    llm = await add_llm(unit.stub, provider.provider_id, "m", context_max_messages=10)

    updated = (await unit.stub.UpdateLlm(pb.UpdateLlmRequest(llm_id=llm.llm_id, context_max_chars=500))).llm

    assert (updated.name, updated.context_max_messages, updated.context_max_chars) == ("m", 10, 500)
    renamed = (await unit.stub.UpdateLlm(pb.UpdateLlmRequest(llm_id=llm.llm_id, name="m2"))).llm
    assert (renamed.name, renamed.context_max_chars) == ("m2", 500)
    assert (await unit.stub.GetLlm(pb.GetLlmRequest(llm_id=llm.llm_id))).llm == renamed


async def test_update_llm_rejects_taken_name_bad_limits_and_missing_model(unit, provider):
    await add_llm(unit.stub, provider.provider_id, "taken")
    llm = await add_llm(unit.stub, provider.provider_id, "m")

    await expect_error(unit.stub.UpdateLlm(pb.UpdateLlmRequest(llm_id=llm.llm_id, name="taken")),
                       EXISTS, "LLM_NAME_TAKEN")
    await expect_error(unit.stub.UpdateLlm(pb.UpdateLlmRequest(llm_id=llm.llm_id, context_max_messages=0)),
                       INVALID, "INVALID_CONTEXT_LIMIT")
    await expect_error(unit.stub.UpdateLlm(pb.UpdateLlmRequest(llm_id=llm.llm_id, name="")),
                       INVALID, "INVALID_LLM_NAME")
    await expect_error(unit.stub.UpdateLlm(pb.UpdateLlmRequest(llm_id="gone", name="x")), NOT_FOUND, "LLM_NOT_FOUND")


async def test_delete_llm_hides_it(unit, provider):
    llm = await add_llm(unit.stub, provider.provider_id, "m")
    kept = await add_llm(unit.stub, provider.provider_id, "kept")

    await unit.stub.DeleteLlm(pb.DeleteLlmRequest(llm_id=llm.llm_id))

    await expect_error(unit.stub.GetLlm(pb.GetLlmRequest(llm_id=llm.llm_id)), NOT_FOUND, "LLM_NOT_FOUND")
    await expect_error(unit.stub.DeleteLlm(pb.DeleteLlmRequest(llm_id=llm.llm_id)), NOT_FOUND, "LLM_NOT_FOUND")
    await expect_error(unit.stub.UpdateLlm(pb.UpdateLlmRequest(llm_id=llm.llm_id, name="x")),
                       NOT_FOUND, "LLM_NOT_FOUND")
    listed = await unit.stub.ListLlms(pb.ListLlmsRequest())
    assert [m.llm_id for m in listed.llms] == [kept.llm_id]


async def test_list_llms_pages_and_filters_by_provider(unit, provider):
    other = await add_provider(unit.stub, name="other")
    mine = [await add_llm(unit.stub, provider.provider_id, f"m{i}") for i in range(3)]
    theirs = await add_llm(unit.stub, other.provider_id, "t")
    mine.append(await add_llm(unit.stub, provider.provider_id, "m3"))

    first = await unit.stub.ListLlms(pb.ListLlmsRequest(provider_id=provider.provider_id, page_size=3))
    second = await unit.stub.ListLlms(pb.ListLlmsRequest(provider_id=provider.provider_id, page_size=3,
                                                         page_token=first.next_page_token))

    assert [m.llm_id for m in [*first.llms, *second.llms]] == [m.llm_id for m in mine]
    assert first.next_page_token and not second.next_page_token
    everything = await unit.stub.ListLlms(pb.ListLlmsRequest())
    assert [m.llm_id for m in everything.llms] == [m.llm_id for m in mine[:3] + [theirs] + mine[3:]]


async def test_list_llms_of_a_missing_or_deleted_provider_is_not_found(unit, provider):
    await expect_error(unit.stub.ListLlms(pb.ListLlmsRequest(provider_id="nobody")), NOT_FOUND, "PROVIDER_NOT_FOUND")
    await unit.stub.DeleteProvider(pb.DeleteProviderRequest(provider_id=provider.provider_id))
    await expect_error(unit.stub.ListLlms(pb.ListLlmsRequest(provider_id=provider.provider_id)),
                       NOT_FOUND, "PROVIDER_NOT_FOUND")
    await expect_error(unit.stub.ListLlms(pb.ListLlmsRequest(page_size=-2)), INVALID, "INVALID_PAGE_SIZE")
