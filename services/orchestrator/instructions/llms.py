"""Control Unit handlers of the LLM_PROVIDER_* and LLM_* management instructions (llm unit)."""

from llmchatlinker.llm.v1 import llm_service_pb2 as llm_pb2
from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2 as orchestrator_pb2
from services.orchestrator.instructions.run import Payload, Run, collect, present, require


async def provider_add(run: Run, request: orchestrator_pb2.LlmProviderAdd) -> Payload:
    response = await run.units.models.CreateProvider(llm_pb2.CreateProviderRequest(
        request_id=run.request_id("create-provider"), name=request.name, api_endpoint=request.api_endpoint,
        kind=request.kind, **present(request, "api_key", "max_in_flight", "max_waiting"),
    ))
    return {"provider": response.provider}


async def provider_update(run: Run, request: orchestrator_pb2.LlmProviderUpdate) -> Payload:
    response = await run.units.models.UpdateProvider(llm_pb2.UpdateProviderRequest(
        request_id=run.request_id("update-provider"), provider_id=request.provider_id, kind=request.kind,
        **present(request, "name", "api_endpoint", "api_key", "max_in_flight", "max_waiting"),
    ))
    return {"provider": response.provider}


async def provider_delete(run: Run, request: orchestrator_pb2.LlmProviderDelete) -> Payload:
    await run.units.models.DeleteProvider(llm_pb2.DeleteProviderRequest(
        request_id=run.request_id("delete-provider"), provider_id=request.provider_id,
    ))
    return {}


async def provider_list(run: Run, request: orchestrator_pb2.LlmProviderList) -> Payload:
    providers, token = await collect(run.units.models.ListProviders, llm_pb2.ListProvidersRequest(
        page_size=request.page_size, page_token=request.page_token), "providers")
    return {"providers": orchestrator_pb2.ProviderPage(providers=providers, next_page_token=token)}


async def llm_add(run: Run, request: orchestrator_pb2.LlmAdd) -> Payload:
    response = await run.units.models.CreateLlm(llm_pb2.CreateLlmRequest(
        request_id=run.request_id("create-llm"), provider_id=request.provider_id, name=request.llm_name,
        fallback_llm_ids=request.fallback_llm_ids, **present(request, "context_max_messages", "context_max_chars"),
    ))
    return {"llm": response.llm}


async def llm_update(run: Run, request: orchestrator_pb2.LlmUpdate) -> Payload:
    changes = present(request, "context_max_messages", "context_max_chars", "fallback_llm_ids")
    if request.HasField("llm_name"):
        changes["name"] = request.llm_name
    response = await run.units.models.UpdateLlm(llm_pb2.UpdateLlmRequest(
        request_id=run.request_id("update-llm"), llm_id=request.llm_id, **changes,
    ))
    return {"llm": response.llm}


async def llm_delete(run: Run, request: orchestrator_pb2.LlmDelete) -> Payload:
    await run.units.models.DeleteLlm(llm_pb2.DeleteLlmRequest(
        request_id=run.request_id("delete-llm"), llm_id=request.llm_id,
    ))
    return {}


async def llm_list(run: Run, request: orchestrator_pb2.LlmList) -> Payload:
    llms, token = await collect(run.units.models.ListLlms, llm_pb2.ListLlmsRequest(
        page_size=request.page_size, page_token=request.page_token), "llms")
    return {"llms": orchestrator_pb2.LlmPage(llms=llms, next_page_token=token)}


async def llm_list_by_provider(run: Run, request: orchestrator_pb2.LlmListByProvider) -> Payload:
    # An empty provider_id would list every provider's models.
    llms, token = await collect(run.units.models.ListLlms, llm_pb2.ListLlmsRequest(
        provider_id=require(request.provider_id, "provider_id"), page_size=request.page_size,
        page_token=request.page_token), "llms")
    return {"llms": orchestrator_pb2.LlmPage(llms=llms, next_page_token=token)}


async def usage_list(run: Run, request: orchestrator_pb2.UsageList) -> Payload:
    fields = {name: getattr(request, name) for name in ("start_time", "end_time") if request.HasField(name)}
    response = await run.units.models.ListUsage(llm_pb2.ListUsageRequest(
        group_by=request.group_by, page_size=request.page_size, page_token=request.page_token, **fields))
    return {"usage": orchestrator_pb2.UsagePage(summaries=response.summaries,
                                                next_page_token=response.next_page_token)}


async def user_limits_set(run: Run, request: orchestrator_pb2.UserLimitsSet) -> Payload:
    await run.units.users.live_user(require(request.user_id, "user_id"))  # limits are for users that exist
    response = await run.units.models.SetUserLimits(llm_pb2.SetUserLimitsRequest(
        request_id=run.request_id("set-user-limits"), user_id=request.user_id,
        **present(request, "requests_per_minute", "tokens_per_day", "tokens_per_month"),
    ))
    return {"user_limits": response.limits}


async def user_limits_get(run: Run, request: orchestrator_pb2.UserLimitsGet) -> Payload:
    await run.units.users.live_user(require(request.user_id, "user_id"))
    response = await run.units.models.GetUserLimits(llm_pb2.GetUserLimitsRequest(user_id=request.user_id))
    return {"user_limits": response.limits}
