"""Provider CRUD over real gRPC, on SQLite and PostgreSQL."""

import asyncio

import grpc
import pytest

from llmchatlinker.llm.v1 import llm_service_pb2 as pb
from services.llm_unit import store
from testkit.llm_unit import OLLAMA, OPENAI, SECRET, add_llm, add_provider, expect_error

URL = "https://api.example.com/v1/chat/completions"
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


async def test_create_provider_returns_it_with_defaults(unit):
    provider = await add_provider(unit.stub, name="  acme  ", url=URL, kind=pb.PROVIDER_KIND_UNSPECIFIED)

    assert len(provider.provider_id) == 36
    assert (provider.name, provider.api_endpoint, provider.kind) == ("acme", URL, OPENAI)
    assert not provider.has_api_key
    assert provider.create_time.seconds > 0 and provider.update_time == provider.create_time


async def test_get_provider_returns_what_was_created(unit):
    created = await add_provider(unit.stub, url=URL, kind=OLLAMA, api_key=SECRET)

    got = (await unit.stub.GetProvider(pb.GetProviderRequest(provider_id=created.provider_id))).provider

    assert got == created and got.has_api_key and got.kind == OLLAMA


async def test_duplicate_live_provider_name_is_already_exists(unit):
    await add_provider(unit.stub, name="acme")

    error = await expect_error(add_provider(unit.stub, name="acme"), grpc.StatusCode.ALREADY_EXISTS,
                               "PROVIDER_NAME_TAKEN")
    assert "acme" in error.details()


async def test_deleted_provider_name_can_be_reused(unit):
    first = await add_provider(unit.stub, name="acme")
    await unit.stub.DeleteProvider(pb.DeleteProviderRequest(provider_id=first.provider_id))

    second = await add_provider(unit.stub, name="acme")

    assert second.provider_id != first.provider_id


@pytest.mark.parametrize("fields, reason", [
    ({"name": ""}, "INVALID_PROVIDER_NAME"),
    ({"name": "   "}, "INVALID_PROVIDER_NAME"),
    ({"name": "n" * 101}, "INVALID_PROVIDER_NAME"),
    ({"api_endpoint": ""}, "INVALID_API_ENDPOINT"),
    ({"api_endpoint": "ftp://example.com/chat"}, "INVALID_API_ENDPOINT"),
    ({"api_endpoint": "http:///no-host"}, "INVALID_API_ENDPOINT"),
    ({"api_endpoint": "example.com/chat"}, "INVALID_API_ENDPOINT"),
    ({"api_endpoint": "http://example.com:99999/chat"}, "INVALID_API_ENDPOINT"),
    ({"api_endpoint": "http://example.com/" + "a" * 2000}, "INVALID_API_ENDPOINT"),
    ({"api_key": "has a space"}, "INVALID_API_KEY"),
    ({"api_key": "k" * 4001}, "INVALID_API_KEY"),
    ({"kind": 7}, "INVALID_PROVIDER_KIND"),
    ({"request_id": "r" * 129}, "INVALID_REQUEST_ID"),
])
async def test_create_provider_rejects_invalid_fields(unit, fields, reason):
    request = pb.CreateProviderRequest(name="acme", api_endpoint=URL)
    for field, value in fields.items():
        setattr(request, field, value)

    await expect_error(unit.stub.CreateProvider(request), INVALID, reason)


async def test_limits_are_inclusive(unit):
    provider = await add_provider(unit.stub, name="n" * 100, url="http://h/" + "a" * 1991, api_key="k" * 4000)

    assert len(provider.name) == 100 and len(provider.api_endpoint) == 2000 and provider.has_api_key


async def test_update_provider_changes_only_the_fields_given(unit):
    created = await add_provider(unit.stub, name="acme", url=URL, api_key=SECRET)

    updated = (await unit.stub.UpdateProvider(pb.UpdateProviderRequest(
        provider_id=created.provider_id, name="acme2", kind=OLLAMA))).provider

    assert (updated.name, updated.kind, updated.api_endpoint) == ("acme2", OLLAMA, URL)
    assert updated.has_api_key  # api_key absent: unchanged
    assert updated.create_time == created.create_time
    assert updated.update_time.ToDatetime() >= created.update_time.ToDatetime()
    got = (await unit.stub.GetProvider(pb.GetProviderRequest(provider_id=created.provider_id))).provider
    assert got == updated


async def test_update_provider_with_empty_api_key_removes_the_key(unit):
    created = await add_provider(unit.stub, api_key=SECRET)

    updated = (await unit.stub.UpdateProvider(pb.UpdateProviderRequest(
        provider_id=created.provider_id, api_key=""))).provider

    assert not updated.has_api_key


async def test_update_provider_sets_a_key_and_endpoint(unit):
    created = await add_provider(unit.stub)

    updated = (await unit.stub.UpdateProvider(pb.UpdateProviderRequest(
        provider_id=created.provider_id, api_key=SECRET, api_endpoint=URL))).provider

    assert updated.has_api_key and updated.api_endpoint == URL and updated.kind == OPENAI


async def test_update_provider_to_a_taken_name_is_already_exists(unit):
    await add_provider(unit.stub, name="one")
    two = await add_provider(unit.stub, name="two")

    await expect_error(unit.stub.UpdateProvider(pb.UpdateProviderRequest(provider_id=two.provider_id, name="one")),
                       grpc.StatusCode.ALREADY_EXISTS, "PROVIDER_NAME_TAKEN")
    renamed = await unit.stub.UpdateProvider(pb.UpdateProviderRequest(provider_id=two.provider_id, name="two"))
    assert renamed.provider.name == "two"


async def test_update_provider_rejects_invalid_fields(unit):
    created = await add_provider(unit.stub)

    await expect_error(unit.stub.UpdateProvider(pb.UpdateProviderRequest(provider_id=created.provider_id, name="")),
                       INVALID, "INVALID_PROVIDER_NAME")
    await expect_error(unit.stub.UpdateProvider(pb.UpdateProviderRequest(
        provider_id=created.provider_id, api_endpoint="mailto:x@y")), INVALID, "INVALID_API_ENDPOINT")


async def test_update_missing_provider_is_not_found_naming_the_id(unit):
    error = await expect_error(
        unit.stub.UpdateProvider(pb.UpdateProviderRequest(provider_id="nope-123", name="x")),
        NOT_FOUND, "PROVIDER_NOT_FOUND")
    assert "nope-123" in error.details()


async def test_get_missing_provider_is_not_found_and_empty_id_is_invalid(unit):
    error = await expect_error(unit.stub.GetProvider(pb.GetProviderRequest(provider_id="nope-456")),
                               NOT_FOUND, "PROVIDER_NOT_FOUND")
    assert "nope-456" in error.details()
    await expect_error(unit.stub.GetProvider(pb.GetProviderRequest()), INVALID, "MISSING_ID")


async def test_delete_provider_hides_it_and_its_models(unit):
    provider = await add_provider(unit.stub)
    llm = await add_llm(unit.stub, provider.provider_id)
    kept = await add_provider(unit.stub, name="other")

    await unit.stub.DeleteProvider(pb.DeleteProviderRequest(provider_id=provider.provider_id))

    await expect_error(unit.stub.GetProvider(pb.GetProviderRequest(provider_id=provider.provider_id)),
                       NOT_FOUND, "PROVIDER_NOT_FOUND")
    await expect_error(unit.stub.GetLlm(pb.GetLlmRequest(llm_id=llm.llm_id)), NOT_FOUND, "LLM_NOT_FOUND")
    listed = await unit.stub.ListProviders(pb.ListProvidersRequest())
    assert [p.provider_id for p in listed.providers] == [kept.provider_id]
    assert not (await unit.stub.ListLlms(pb.ListLlmsRequest())).llms
    await expect_error(unit.stub.DeleteProvider(pb.DeleteProviderRequest(provider_id=provider.provider_id)),
                       NOT_FOUND, "PROVIDER_NOT_FOUND")
    await expect_error(unit.stub.CreateLlm(pb.CreateLlmRequest(provider_id=provider.provider_id, name="m")),
                       NOT_FOUND, "PROVIDER_NOT_FOUND")


async def test_deletes_are_soft_the_rows_stay_marked(unit):
    provider = await add_provider(unit.stub)
    llm = await add_llm(unit.stub, provider.provider_id)
    await unit.stub.DeleteProvider(pb.DeleteProviderRequest(provider_id=provider.provider_id))

    def deleted_at():
        with unit.server.database.transaction() as session:
            return (session.get(store.ProviderRow, 1).deleted_at, session.get(store.LlmRow, 1).deleted_at)

    provider_deleted, llm_deleted = await asyncio.to_thread(deleted_at)
    assert provider_deleted is not None and llm_deleted is not None


async def test_list_providers_pages_oldest_first(unit):
    created = [await add_provider(unit.stub, name=f"p{i}") for i in range(5)]

    seen, token, pages = [], "", 0
    while True:
        page = await unit.stub.ListProviders(pb.ListProvidersRequest(page_size=2, page_token=token))
        seen += [p.provider_id for p in page.providers]
        pages += 1
        token = page.next_page_token
        if not token:
            break

    assert seen == [p.provider_id for p in created] and pages == 3
    everything = await unit.stub.ListProviders(pb.ListProvidersRequest(page_size=0))
    assert len(everything.providers) == 5 and not everything.next_page_token


async def test_list_providers_rejects_negative_size_and_foreign_token(unit):
    await expect_error(unit.stub.ListProviders(pb.ListProvidersRequest(page_size=-1)), INVALID, "INVALID_PAGE_SIZE")
    await expect_error(unit.stub.ListProviders(pb.ListProvidersRequest(page_token="garbage!")),
                       INVALID, "INVALID_PAGE_TOKEN")
