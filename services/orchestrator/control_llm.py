"""Control Unit handlers of the LLM_PROVIDER_* and LLM_* management instructions (llm unit)."""

import functools

from llmchatlinker.llm.v1 import llm_service_pb2 as llm_pb2
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from services.orchestrator.channels import UNARY_DEADLINE_S
from services.orchestrator.control_run import Payload, Run, collect, present, require


def changes_models(handler):
    """Marks a handler that changes models or providers: the orchestrator's kept models are read
    afresh after it, whether or not the change went through (a timed-out call may have)."""
    @functools.wraps(handler)
    async def changing(run: Run, request) -> Payload:
        try:
            return await handler(run, request)
        finally:
            run.joined.models.changed()
    return changing


async def provider_add(run: Run, request: orchestrator_pb2.LlmProviderAdd) -> Payload:
    response = await run.channels.llms.CreateProvider(llm_pb2.CreateProviderRequest(
        request_id=run.request_id("create-provider"), name=request.name, api_endpoint=request.api_endpoint,
        kind=request.kind, **present(request, "api_key"),
    ), timeout=UNARY_DEADLINE_S)
    return {"provider": response.provider}


@changes_models
async def provider_update(run: Run, request: orchestrator_pb2.LlmProviderUpdate) -> Payload:
    response = await run.channels.llms.UpdateProvider(llm_pb2.UpdateProviderRequest(
        request_id=run.request_id("update-provider"), provider_id=request.provider_id, kind=request.kind,
        **present(request, "name", "api_endpoint", "api_key"),
    ), timeout=UNARY_DEADLINE_S)
    return {"provider": response.provider}


@changes_models
async def provider_delete(run: Run, request: orchestrator_pb2.LlmProviderDelete) -> Payload:
    await run.channels.llms.DeleteProvider(llm_pb2.DeleteProviderRequest(
        request_id=run.request_id("delete-provider"), provider_id=request.provider_id,
    ), timeout=UNARY_DEADLINE_S)
    return {}


async def provider_list(run: Run, request: orchestrator_pb2.LlmProviderList) -> Payload:
    providers, token = await collect(run.channels.llms.ListProviders, llm_pb2.ListProvidersRequest(
        page_size=request.page_size, page_token=request.page_token), "providers")
    return {"providers": orchestrator_pb2.ProviderPage(providers=providers, next_page_token=token)}


async def llm_add(run: Run, request: orchestrator_pb2.LlmAdd) -> Payload:
    response = await run.channels.llms.CreateLlm(llm_pb2.CreateLlmRequest(
        request_id=run.request_id("create-llm"), provider_id=request.provider_id, name=request.llm_name,
        **present(request, "context_max_messages", "context_max_chars"),
    ), timeout=UNARY_DEADLINE_S)
    return {"llm": response.llm}


@changes_models
async def llm_update(run: Run, request: orchestrator_pb2.LlmUpdate) -> Payload:
    changes = present(request, "context_max_messages", "context_max_chars")
    if request.HasField("llm_name"):
        changes["name"] = request.llm_name
    response = await run.channels.llms.UpdateLlm(llm_pb2.UpdateLlmRequest(
        request_id=run.request_id("update-llm"), llm_id=request.llm_id, **changes,
    ), timeout=UNARY_DEADLINE_S)
    return {"llm": response.llm}


@changes_models
async def llm_delete(run: Run, request: orchestrator_pb2.LlmDelete) -> Payload:
    await run.channels.llms.DeleteLlm(llm_pb2.DeleteLlmRequest(
        request_id=run.request_id("delete-llm"), llm_id=request.llm_id,
    ), timeout=UNARY_DEADLINE_S)
    return {}


async def llm_list(run: Run, request: orchestrator_pb2.LlmList) -> Payload:
    llms, token = await collect(run.channels.llms.ListLlms, llm_pb2.ListLlmsRequest(
        page_size=request.page_size, page_token=request.page_token), "llms")
    return {"llms": orchestrator_pb2.LlmPage(llms=llms, next_page_token=token)}


async def llm_list_by_provider(run: Run, request: orchestrator_pb2.LlmListByProvider) -> Payload:
    # An empty provider_id would list every provider's models.
    llms, token = await collect(run.channels.llms.ListLlms, llm_pb2.ListLlmsRequest(
        provider_id=require(request.provider_id, "provider_id"), page_size=request.page_size,
        page_token=request.page_token), "llms")
    return {"llms": orchestrator_pb2.LlmPage(llms=llms, next_page_token=token)}


HANDLERS = {
    "llm_provider_add": provider_add,
    "llm_provider_update": provider_update,
    "llm_provider_delete": provider_delete,
    "llm_provider_list": provider_list,
    "llm_add": llm_add,
    "llm_update": llm_update,
    "llm_delete": llm_delete,
    "llm_list": llm_list,
    "llm_list_by_provider": llm_list_by_provider,
}
