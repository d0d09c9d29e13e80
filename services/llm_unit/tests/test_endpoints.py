"""Where a provider may be called: never at a link-local or metadata address; at loopback and
private ones only when allowed. Checked on the endpoint when it is stored, and on the address
actually connected to when it is called."""

import grpc
import pytest

from llmchatlinker.llm.v1 import llm_service_pb2 as pb
from services.llm_unit.addresses import NEVER, PRIVATE, Policy
from testkit.llm_unit import (HostsResolver, add_llm, add_model, add_provider, expect_error, generate, kit_json,
                              running_unit, settings_for)

INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED
LINK_LOCAL_URLS = [
    "http://169.254.169.254/latest/meta-data",
    "http://[fe80::1]/v1/chat/completions",
    "http://[::ffff:169.254.169.254]/v1",
    "http://[64:ff9b::a9fe:a9fe]/v1",
    "http://100.100.100.200/v1",
    "http://[fd00:ec2::254]/v1",
]
PRIVATE_URLS = ["http://127.0.0.1:11434/api/chat", "http://localhost/v1", "http://[::1]/v1", "http://10.0.0.7/v1",
                "http://192.168.1.2/v1", "http://0.0.0.0:11434/v1", "http://app.localhost/v1"]


@pytest.fixture
async def strict_unit(tmp_path):
    """A unit as the deployment files run it: private and loopback endpoints refused."""
    async with running_unit(settings_for(f"sqlite:///{tmp_path / 'unit.db'}", allow_private_endpoints=False)) as unit:
        yield unit


@pytest.mark.parametrize("url", LINK_LOCAL_URLS)
async def test_a_link_local_or_metadata_endpoint_is_always_refused(sqlite_unit, url):
    error = await expect_error(add_provider(sqlite_unit.stub, url=url), INVALID, "API_ENDPOINT_NOT_ALLOWED")
    provider = await add_provider(sqlite_unit.stub, url="http://a.example/v1")
    await expect_error(sqlite_unit.stub.UpdateProvider(pb.UpdateProviderRequest(
        provider_id=provider.provider_id, api_endpoint=url)), INVALID, "API_ENDPOINT_NOT_ALLOWED")

    assert "never called" in error.details()


@pytest.mark.parametrize("url", PRIVATE_URLS)
async def test_loopback_and_private_endpoints_are_refused_unless_allowed(sqlite_unit, strict_unit, url):
    error = await expect_error(add_provider(strict_unit.stub, url=url), INVALID, "API_ENDPOINT_NOT_ALLOWED")
    allowed = await add_provider(sqlite_unit.stub, url=url)

    assert "LLMCHATLINKER_LLM_UNIT_ALLOW_PRIVATE_ENDPOINTS=false" in error.details()
    assert allowed.api_endpoint == url


async def test_a_name_that_resolves_to_a_link_local_address_is_refused_when_called(tmp_path):
    hosts = HostsResolver({"metadata.example": ["169.254.169.254"]})
    async with running_unit(settings_for(f"sqlite:///{tmp_path / 'unit.db'}"), resolver=hosts) as unit:
        llm = await add_model(unit.stub, "http://metadata.example/v1/chat/completions")  # a name: not judged yet

        error = await expect_error(generate(unit.stub, llm.llm_id), DENIED, "PROVIDER_ADDRESS_NOT_ALLOWED")

    assert error.details() == f"provider 'acme' is at {NEVER}"
    assert "169.254" not in error.details()  # the caller learns the class, not the internal address


async def test_of_a_name_s_addresses_only_the_allowed_ones_are_connected_to(tmp_path, provider_server):
    hosts = HostsResolver({"mixed.example": ["169.254.169.254", "127.0.0.1"]})
    async with running_unit(settings_for(f"sqlite:///{tmp_path / 'unit.db'}"), resolver=hosts) as unit:
        llm = await add_model(unit.stub, f"http://mixed.example:{provider_server.port}/v1/chat/completions")

        await generate(unit.stub, llm.llm_id)

    assert len(await kit_json(provider_server, "/_testkit/requests")) == 1


async def test_the_address_checked_is_the_one_the_request_connects_to(tmp_path, provider_server):
    """DNS rebinding: the name's answer changes between calls; each call is judged by its own answer,
    the one it connects to, not by an earlier look-up."""
    answers = iter([["169.254.169.254"], ["127.0.0.1"]])
    hosts = HostsResolver({"rebind.example": lambda: next(answers)})
    settings = settings_for(f"sqlite:///{tmp_path / 'unit.db'}")
    async with running_unit(settings, resolver=hosts) as unit:
        llm = await add_model(unit.stub, f"http://rebind.example:{provider_server.port}/v1/chat/completions")

        await expect_error(generate(unit.stub, llm.llm_id), DENIED, "PROVIDER_ADDRESS_NOT_ALLOWED")
        await generate(unit.stub, llm.llm_id)

    assert hosts.lookups == ["rebind.example"] * 2
    assert len(await kit_json(provider_server, "/_testkit/requests")) == 1


async def test_an_endpoint_stored_while_allowed_is_refused_once_the_setting_forbids_it(tmp_path, provider_server):
    url = f"sqlite:///{tmp_path / 'unit.db'}"
    async with running_unit(settings_for(url)) as unit:
        llm = await add_model(unit.stub, provider_server.openai_url)  # http://127.0.0.1:<port>/...

    async with running_unit(settings_for(url, allow_private_endpoints=False)) as unit:
        error = await expect_error(generate(unit.stub, llm.llm_id), DENIED, "PROVIDER_ADDRESS_NOT_ALLOWED")
        other = await add_llm(unit.stub, llm.provider_id, "m2")
        await expect_error(generate(unit.stub, other.llm_id), DENIED, "PROVIDER_ADDRESS_NOT_ALLOWED")

    assert error.details() == f"provider 'acme' is at {PRIVATE}"
    assert await kit_json(provider_server, "/_testkit/requests") == []  # refused before a byte was sent


@pytest.mark.parametrize("address, allowed_when_private_is", [
    ("8.8.8.8", (True, True)), ("2001:4860:4860::8888", (True, True)),
    ("127.0.0.1", (False, True)), ("10.1.2.3", (False, True)), ("100.64.0.1", (False, True)),
    ("fd12::1", (False, True)), ("::1", (False, True)),
    ("169.254.0.1", (False, False)), ("fe80::1%2", (False, False)), ("::ffff:169.254.169.254", (False, False)),
    ("2002:a9fe:a9fe::1", (False, False)), ("192.0.0.192", (False, False)),
])
def test_the_address_policy(address, allowed_when_private_is):
    assert tuple(Policy(allow_private=allowed).refusal(address) is None for allowed in (False, True)) == \
        allowed_when_private_is
