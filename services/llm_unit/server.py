"""The LLM unit's gRPC transport: proto in, rules and one transaction (in a thread), proto out."""

import asyncio
import base64
import dataclasses
import datetime
import functools
import logging
import pathlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from aiohttp.abc import AbstractResolver

from llmchatlinker.llm.v1 import llm_service_pb2 as pb
from llmchatlinker.llm.v1 import llm_service_pb2_grpc as pb_grpc
from services.common import paging
from services.common.admission import Admission
from services.common.db import Database, utcnow
from services.common.deadlines import SHUTDOWN_GRACE_SECONDS
from services.common.batching import Batcher
from services.common.errors import maps_errors
from services.common import metrics, telemetry
from services.common.protoconv import timestamp
from services.common.retention import Pruner
from services.common.serving import AsyncServer, failing_in_one_line
from services.llm_unit import errors, keyring, limits, service, shares, store
from services.llm_unit.failover import Failover, RetryPolicy
from services.llm_unit.traffic import Breakers, Circuit, Gates
from services.llm_unit.spent import SpentTokens
from services.llm_unit.usage import NoUsage, UsageLedger
from services.common.readcache import ReadCache
from services.llm_unit.config import Settings
from services.llm_unit.errors import DOMAIN
from services.llm_unit.addresses import Policy
from services.llm_unit.providers import ProviderClient
from services.llm_unit.telemetry import Watch, watch_breakers

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["LlmService"].full_name
MIGRATIONS = pathlib.Path(__file__).resolve().parent / "migrations"
# Threads that run the (synchronous) database transactions, off the event loop.
DATABASE_THREADS = 8
# Seconds the tokens a user has spent (read for their budgets) are used as read, and for how much
# longer while they are read again in the background (spent.py), so that a returning user's
# admission waits for no read: tokens counted through another replica count within about
# SPENT_TTL_S (this replica's own, at once). Users kept at most.
SPENT_TTL_S = 1.0
SPENT_STALE_S = 60.0
SPENT_ENTRIES = 100_000
_KINDS = {pb.PROVIDER_KIND_OPENAI: service.Kind.OPENAI, pb.PROVIDER_KIND_OLLAMA: service.Kind.OLLAMA}
_KIND_NUMBERS = {kind: number for number, kind in _KINDS.items()}
_GROUPINGS = {pb.USAGE_GROUPING_USER: service.Grouping.USER, pb.USAGE_GROUPING_LLM: service.Grouping.LLM,
              pb.USAGE_GROUPING_PROVIDER: service.Grouping.PROVIDER}
_CIRCUITS = {Circuit.CLOSED: pb.CIRCUIT_STATE_CLOSED, Circuit.OPEN: pb.CIRCUIT_STATE_OPEN,
             Circuit.HALF_OPEN: pb.CIRCUIT_STATE_HALF_OPEN}


class LlmServicer(pb_grpc.LlmServiceServicer):
    def __init__(self, database: Database, executor: ThreadPoolExecutor, providers: ProviderClient,
                 generation_timeout_ms: int, models: ReadCache[tuple[service.Llm, service.Provider]],
                 keys: keyring.Keyring, addresses: Policy, failover: Failover, breakers: Breakers,
                 usage: UsageLedger | NoUsage, user_limits: ReadCache[limits.Limits | bool], default_limits: limits.Limits,
                 now: Callable[[], datetime.datetime], clock: Callable[[], float] = time.monotonic) -> None:
        self._database = database
        self._keys = keys
        self._addresses = addresses
        self._executor = executor
        self._providers = providers
        self._generation_timeout_ms = generation_timeout_ms
        # GenerateReply's (model, provider) by model id; every write of this unit clears it.
        self._models = models
        self._failover = failover
        self._breakers = breakers
        self._usage = usage
        # A user's limits as they apply, by user id, and under "" whether any user has limits of their
        # own; SetUserLimits clears it.
        self._user_limits = user_limits
        self._default_limits = default_limits
        self._now = now
        self._limit_reads = Batcher(self._read_limits_together)
        # Admission: units of users' rates taken ahead from the database (shares.py), and the tokens
        # users have spent today and this month (spent.py; the usage ledger's writes add to it).
        self._shares = shares.RateShares()
        self._share_takes = Batcher(self._take_shares_together)
        self.spent = SpentTokens(self._read_spent, SPENT_TTL_S, SPENT_STALE_S, SPENT_ENTRIES, clock)

    @maps_errors(DOMAIN)
    async def CreateProvider(self, request, context):
        fields = service.new_provider(request.name, request.api_endpoint, _kind(request.kind),
                                      _optional(request, "api_key"), self._keys.seal, self._addresses,
                                      _optional(request, "max_in_flight"), _optional(request, "max_waiting"))
        return await self._mutate(
            request.request_id, pb.CreateProviderResponse,
            lambda session: pb.CreateProviderResponse(provider=self._provider(store.create_provider(session, fields))),
            conflict=errors.provider_name_taken(fields.name),
        )

    @maps_errors(DOMAIN)
    async def UpdateProvider(self, request, context):
        provider_id = service.required_id(request.provider_id, "provider_id")
        changes = service.provider_changes(
            _optional(request, "name"), _optional(request, "api_endpoint"), _kind(request.kind),
            _optional(request, "api_key"), self._keys.seal, self._addresses,
            _optional(request, "max_in_flight"), _optional(request, "max_waiting"),
        )
        return await self._mutate(
            request.request_id, pb.UpdateProviderResponse,
            lambda session: pb.UpdateProviderResponse(
                provider=self._provider(store.update_provider(session, provider_id, changes))),
            conflict=errors.provider_name_taken(changes.name) if changes.name else None,
        )

    @maps_errors(DOMAIN)
    async def DeleteProvider(self, request, context):
        provider_id = service.required_id(request.provider_id, "provider_id")

        def apply(session):
            store.delete_provider(session, provider_id)
            return pb.DeleteProviderResponse()

        return await self._mutate(request.request_id, pb.DeleteProviderResponse, apply)

    @maps_errors(DOMAIN)
    async def GetProvider(self, request, context):
        provider = await self._read(store.get_provider, service.required_id(request.provider_id, "provider_id"))
        return pb.GetProviderResponse(provider=self._provider(provider))

    @maps_errors(DOMAIN)
    async def ListProviders(self, request, context):
        limit = paging.page_size(request.page_size)
        after = paging.decode_token(request.page_token)
        providers, next_position = await self._read(store.list_providers, after, limit)
        return pb.ListProvidersResponse(providers=[self._provider(p) for p in providers],
                                        next_page_token=_token(next_position))

    @maps_errors(DOMAIN)
    async def CreateLlm(self, request, context):
        provider_id = service.required_id(request.provider_id, "provider_id")
        fields = service.new_llm(request.name, _optional(request, "context_max_messages"),
                                 _optional(request, "context_max_chars"), request.fallback_llm_ids)
        return await self._mutate(
            request.request_id, pb.CreateLlmResponse,
            lambda session: pb.CreateLlmResponse(llm=_llm(store.create_llm(session, provider_id, fields))),
            conflict=errors.llm_name_taken(fields.name),
        )

    @maps_errors(DOMAIN)
    async def UpdateLlm(self, request, context):
        llm_id = service.required_id(request.llm_id, "llm_id")
        fallbacks = request.fallback_llm_ids.llm_ids if request.HasField("fallback_llm_ids") else None
        changes = service.llm_changes(_optional(request, "name"), _optional(request, "context_max_messages"),
                                      _optional(request, "context_max_chars"), fallbacks)
        return await self._mutate(
            request.request_id, pb.UpdateLlmResponse,
            lambda session: pb.UpdateLlmResponse(llm=_llm(store.update_llm(session, llm_id, changes))),
            conflict=errors.llm_name_taken(changes.name) if changes.name else None,
        )

    @maps_errors(DOMAIN)
    async def DeleteLlm(self, request, context):
        llm_id = service.required_id(request.llm_id, "llm_id")

        def apply(session):
            store.delete_llm(session, llm_id)
            return pb.DeleteLlmResponse()

        return await self._mutate(request.request_id, pb.DeleteLlmResponse, apply)

    @maps_errors(DOMAIN)
    async def GetLlm(self, request, context):
        llm, provider = await self._read(store.get_llm, service.required_id(request.llm_id, "llm_id"))
        return pb.GetLlmResponse(llm=_llm(llm), provider=self._provider(provider))

    @maps_errors(DOMAIN)
    async def ListLlms(self, request, context):
        limit = paging.page_size(request.page_size)
        after = paging.decode_token(request.page_token)
        llms, next_position = await self._read(store.list_llms, request.provider_id, after, limit)
        return pb.ListLlmsResponse(llms=[_llm(llm) for llm in llms], next_page_token=_token(next_position))

    @maps_errors(DOMAIN)
    async def GenerateReply(self, request, context):
        loop = asyncio.get_running_loop()
        started = loop.time()
        budget = service.generation_seconds(request.timeout_ms, self._generation_timeout_ms, context.time_remaining())
        deadline = loop.time() + budget
        messages = service.conversation((m.role, m.content) for m in request.messages)
        llm_id = service.required_id(request.llm_id, "llm_id")
        llm, provider = await self._model(llm_id)
        service.check_provider(llm, request.provider_id)
        if request.user_id:
            await self._admit(request.user_id)
        with Watch(provider.name, llm.name, provider.api_endpoint) as watch:
            async with self._failover.reply(self._candidates(llm, provider), messages, deadline, budget) as answer:
                # A cancelled call may end while this generator is parked at a yield, where no
                # exception reaches it; the task's end still hangs up on the provider.
                asyncio.current_task().add_done_callback(answer.abort)
                first_token = None
                # The deltas of one network read go as one message: when this stream (or the event
                # loop) is busy, more of them wait in the socket, so a busy relay sends fewer,
                # larger messages, while an idle one sends each token as it comes.
                async for deltas in answer:
                    if not deltas:
                        continue
                    if first_token is None:
                        first_token = loop.time()
                        watch.first_token()
                    yield pb.GenerateReplyResponse(delta=pb.TokenDelta(content="".join(deltas)))
                final = answer.final()
                ended = loop.time()
                watch.finished(final.prompt_tokens, final.completion_tokens)
                prompt, completion, estimated = service.token_counts(final.prompt_tokens, final.completion_tokens,
                                                                     messages, final.content)
                self._usage.record(service.Usage(
                    ended_at=self._now(), user_id=request.user_id, chat_id=request.chat_id, llm_id=answer.llm.llm_id,
                    provider_id=answer.provider.provider_id, prompt_tokens=prompt, completion_tokens=completion,
                    estimated=estimated, time_to_first_token_ms=round(((first_token or ended) - started) * 1000),
                    duration_ms=round((ended - started) * 1000), attempts=answer.attempts,
                ))
                yield pb.GenerateReplyResponse(final=pb.FinalReply(
                    content=final.content, finish_reason=final.finish_reason,
                    usage=pb.TokenUsage(prompt_tokens=final.prompt_tokens, completion_tokens=final.completion_tokens),
                    llm_id=answer.llm.llm_id, provider_id=answer.provider.provider_id, attempts=answer.attempts,
                ))

    @maps_errors(DOMAIN)
    async def ListUsage(self, request, context):
        if not self._usage.accounting:
            raise errors.usage_accounting_off("no usage to report")
        grouping = _GROUPINGS.get(request.group_by)
        if grouping is None:
            raise errors.invalid("group_by must be USAGE_GROUPING_USER, _LLM or _PROVIDER", "INVALID_GROUPING")
        start = as_datetime(request.start_time) if request.HasField("start_time") else None
        end = as_datetime(request.end_time) if request.HasField("end_time") else None
        service.usage_range(start, end)
        limit = paging.page_size(request.page_size)
        after = _key_token(request.page_token)
        await self._usage.flush()
        summaries, last_key = await self._read(store.usage_summaries, grouping, start, end, after, limit)
        return pb.ListUsageResponse(
            summaries=[pb.UsageSummary(**dataclasses.asdict(summary)) for summary in summaries],
            next_page_token="" if last_key is None else base64.urlsafe_b64encode(last_key.encode()).decode(),
        )

    async def _admit(self, user_id: str) -> None:
        """Refuses a generation over one of the user's limits, before any provider is called. While no
        user has limits of their own (one read per cache period for the replica), no user's limits
        are read: the defaults apply, and with none, nothing is read or written either. Budgets are
        checked against the tokens spent as last read (read again in the background once older
        than SPENT_TTL_S, with this replica's own tokens added as they are written); the rate is
        admitted from the units of it this replica holds, and when it holds none, by taking a share
        from the database (shares.py)."""
        limits.user_id_of(user_id)
        if not await self._user_limits.get("", self._any_user_limits):
            applying = self._default_limits
        else:
            applying = await self._user_limits.get(user_id, lambda: self._limits_of(user_id))
        if not applying.any:
            return
        now = self._now()
        if applying.tokens_per_day or applying.tokens_per_month:
            day, month = limits.window_start(limits.Window.DAY, now), limits.window_start(limits.Window.MONTH, now)
            spent = await self.spent.get((user_id, day, month))
            for window, budget, used in ((limits.Window.DAY, applying.tokens_per_day, spent[0]),
                                         (limits.Window.MONTH, applying.tokens_per_month, spent[1])):
                if budget and used >= budget:
                    raise limits.refusal(user_id, window, budget, now)
        rate = applying.requests_per_minute
        if rate:
            minute = limits.window_start(limits.Window.MINUTE, now)
            if self._shares.use(user_id, minute):  # most generations of a busy user: nothing to write
                return
            taken = await self._share_takes.call((user_id, minute, rate, shares.share_of(rate)))
            if not taken:
                raise limits.refusal(user_id, limits.Window.MINUTE, rate, now)
            self._shares.keep(user_id, minute, taken - 1)  # one is this generation's

    async def _take_shares_together(self, asks: list[tuple[str, datetime.datetime, int, int]]) -> list[int]:
        """Shares of rates asked together, on one connection and one database thread hop (SQLite:
        one transaction; PostgreSQL: one statement in autocommit for all the shares that fit)."""
        def take():
            with self._database.autocommitting() as connection:
                return store.take_rate_shares(connection, asks)

        return await self._in_thread(take)

    async def _read_spent(self, keys: list) -> list[tuple[int, int]]:
        def read():
            with self._database.autocommitting(reads_only=True) as connection:  # PostgreSQL: one round trip
                return store.get_tokens_spent(connection, keys)

        return await self._in_thread(read)

    async def _any_user_limits(self) -> bool:
        return await self._read(store.any_user_limits)

    async def _limits_of(self, user_id: str) -> limits.Limits:
        return (await self._limit_reads.call(user_id)).over(self._default_limits)

    async def _read_limits_together(self, user_ids: list[str]) -> list[limits.OwnLimits]:
        """The limits of users whose generations arrive together, in one read."""
        return await self._read(store.get_users_limits, user_ids)

    @maps_errors(DOMAIN)
    async def SetUserLimits(self, request, context):
        own = limits.own_limits(request.user_id, _optional(request, "requests_per_minute"),
                                _optional(request, "tokens_per_day"), _optional(request, "tokens_per_month"))
        defaults = self._default_limits
        if not self._usage.accounting and (own.tokens_per_day or own.tokens_per_month):
            raise errors.usage_accounting_off("token budgets cannot be kept")

        def apply(session):
            store.set_user_limits(session, request.user_id, own)
            return pb.SetUserLimitsResponse(limits=_user_limits(request.user_id, own.over(defaults)))

        try:
            return await self._mutate(request.request_id, pb.SetUserLimitsResponse, apply)
        finally:
            self._user_limits.clear()
            self._shares.clear()  # taken at the old rate

    @maps_errors(DOMAIN)
    async def GetUserLimits(self, request, context):
        user_id = limits.user_id_of(request.user_id)
        return pb.GetUserLimitsResponse(limits=_user_limits(user_id, await self._limits_of(user_id)))

    def _model(self, llm_id: str):
        return self._models.get(llm_id, lambda: self._read(store.get_llm, llm_id))

    async def _candidates(self, llm: service.Llm, provider: service.Provider):
        """The model asked, then its fallbacks that are still live, in order (read when needed only)."""
        yield llm, provider
        for fallback_id in llm.fallback_llm_ids:
            try:
                yield await self._model(fallback_id)
            except errors.NotFound:
                log.info("model %s: fallback %s is gone; skipped", llm.llm_id, fallback_id)

    def _provider(self, provider: service.Provider) -> pb.Provider:
        message = _provider(provider)
        circuit, retry_at = self._breakers.state(provider.provider_id)
        message.circuit_state = _CIRCUITS[circuit]
        if retry_at is not None:
            message.circuit_retry_time.FromNanoseconds(int(retry_at * 1e9))
        return message

    async def _in_thread(self, function: Callable, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(function, *args))

    async def _read(self, query: Callable, *args):
        def transaction():
            with self._database.reading() as connection:
                return query(connection, *args)

        return await self._in_thread(transaction)

    async def _mutate(self, request_id: str, response_type, apply: Callable, conflict=None):
        service.request_id(request_id)
        loop = asyncio.get_running_loop()

        def write():
            try:
                return store.mutate(self._database, request_id, response_type.FromString, apply, conflict)
            finally:
                # Scheduled by the thread once the transaction has ended, so the cache is cleared
                # after the commit and before this call answers, even when the call was cancelled.
                loop.call_soon_threadsafe(self._models.clear)

        return await self._in_thread(write)


def _user_limits(user_id: str, applying: limits.Limits) -> pb.UserLimits:
    return pb.UserLimits(user_id=user_id, **dataclasses.asdict(applying))


def _key_token(token: str) -> str | None:
    """The key a page of usage starts after (next_page_token is the last key, encoded)."""
    if not token:
        return None
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeError):
        raise errors.invalid("page_token is not a token this service gave", "INVALID_PAGE_TOKEN") from None


def as_datetime(stamp) -> datetime.datetime:
    return stamp.ToDatetime(tzinfo=datetime.timezone.utc)


def _optional(request, field: str):
    return getattr(request, field) if request.HasField(field) else None


def _kind(number: int) -> service.Kind | None:
    """UNSPECIFIED is None (the default or "unchanged"); an unknown number is an error."""
    if number == pb.PROVIDER_KIND_UNSPECIFIED:
        return None
    if number not in _KINDS:
        raise errors.invalid(f"kind {number} is not a ProviderKind", "INVALID_PROVIDER_KIND")
    return _KINDS[number]


def _token(position: int | None) -> str:
    return "" if position is None else paging.encode_token(position)


def _provider(provider: service.Provider) -> pb.Provider:
    return pb.Provider(
        provider_id=provider.provider_id, name=provider.name, api_endpoint=provider.api_endpoint,
        kind=_KIND_NUMBERS[provider.kind], has_api_key=provider.has_api_key,
        create_time=timestamp(provider.created_at), update_time=timestamp(provider.updated_at),
        max_in_flight=provider.max_in_flight, max_waiting=provider.max_waiting,
    )


def _llm(llm: service.Llm) -> pb.Llm:
    return pb.Llm(
        llm_id=llm.llm_id, name=llm.name, provider_id=llm.provider_id,
        context_max_messages=llm.context_max_messages, context_max_chars=llm.context_max_chars,
        create_time=timestamp(llm.created_at), update_time=timestamp(llm.updated_at),
        fallback_llm_ids=llm.fallback_llm_ids,
    )


class LlmUnitServer(AsyncServer):
    """The gRPC server plus what the unit owns: its database, the database threads, the HTTP session."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic,
                 resolver: AbstractResolver | None = None, now: Callable[[], datetime.datetime] = utcnow) -> None:
        """`resolver`: how provider names are looked up (default: aiohttp's; tests map names); `now`:
        the wall clock the users' limit windows are read from (tests move it)."""
        self.database = Database(settings.database_url, settings.database_schema)
        try:
            keys = keyring.for_unit(settings.key_encryption_keys, self.database.is_sqlite,
                                    self.database.sqlite_file, settings.address)
            # Keys stored in plain text by an older version are sealed by migration llm_unit_0002.
            self.database.migrate(MIGRATIONS, store.metadata, {"keyring": keys})
            if keys.rotating:
                _reseal(self.database, keys)
        except BaseException:
            self.database.dispose()
            raise
        if metrics.enabled():
            metrics.watch_database(self.database, "llm_unit")
        self._executor = ThreadPoolExecutor(DATABASE_THREADS, thread_name_prefix="llm-unit-db")
        addresses = Policy(allow_private=settings.allow_private_endpoints)
        self._providers = ProviderClient(keys, addresses, settings.max_reply_bytes, resolver)
        models = ReadCache(settings.model_cache_ttl_ms / 1000, clock=clock)
        breakers = Breakers(settings.breaker_failures, settings.breaker_cooldown_ms / 1000, clock=clock)
        watch_breakers(breakers)  # read only when scraped
        failover = Failover(self._providers, RetryPolicy(settings.retries, settings.retry_backoff_ms / 1000),
                            breakers, Gates())
        self._usage = UsageLedger(self._write_usage) if settings.usage_accounting else NoUsage()
        servicer = LlmServicer(self.database, self._executor, self._providers, settings.generation_timeout_ms,
                               models, keys, addresses, failover, breakers, self._usage,
                               ReadCache(settings.model_cache_ttl_ms / 1000, clock=clock),
                               limits.Limits(*settings.default_user_limits), now, clock)
        self._spent = servicer.spent
        self._pruner = Pruner(self.database, store.RETENTION_RULES, settings.retention)
        try:
            super().__init__(lambda server: pb_grpc.add_LlmServiceServicer_to_server(servicer, server),
                             [SERVICE_NAME], settings.address,
                             Admission(settings.tls, settings.internal_token, DOMAIN))
        except BaseException:
            self._release()
            raise

    async def _write_usage(self, records: list[service.Usage]) -> None:
        began = self._spent.clock()

        def write():
            with self.database.writing() as connection:
                store.insert_usage(connection, records)
                store.add_tokens(connection, limits.token_totals(records))

        await asyncio.get_running_loop().run_in_executor(self._executor, write)
        for record in records:  # this replica's tokens count against budgets at once
            tokens = record.prompt_tokens + record.completion_tokens
            self._spent.added((record.user_id, limits.window_start(limits.Window.DAY, record.ended_at),
                               limits.window_start(limits.Window.MONTH, record.ended_at)), tokens, began)

    async def start(self) -> "LlmUnitServer":
        self._usage.start()
        await self._providers.start()
        await super().start()
        self._pruner.start()
        return self

    async def stop(self, grace: float | None = SHUTDOWN_GRACE_SECONDS) -> None:
        await super().stop(grace)
        await self._usage.stop()
        await self._providers.close()
        await asyncio.to_thread(self._pruner.stop)
        await asyncio.to_thread(self._release)

    def _release(self) -> None:
        self._executor.shutdown(wait=True)
        self.database.dispose()


def _reseal(database: Database, keys: keyring.Keyring) -> None:
    """With older keys configured, seals the stored keys again with the first, so the older ones
    can be dropped once every replica has started this way."""
    with database.writing() as connection:
        resealed, left = store.reseal_api_keys(connection, keys.reseal)
    log.info("sealed %d provider API keys again with the first key-encryption key", resealed)
    if left:
        log.warning("%d provider API keys open with none of the key-encryption keys: their providers need "
                    "them given again", left)


def build_server(settings: Settings) -> LlmUnitServer:
    """Migrates the database and builds the server; `await server.start()` inside the event loop."""
    return LlmUnitServer(settings)


def main() -> None:
    with failing_in_one_line("llm_unit"):
        telemetry.start("llm_unit")
        settings = Settings.from_env()
    asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> None:
    with failing_in_one_line("llm_unit"):
        server = build_server(settings)
    log.info("llm_unit serving %s on port %d", SERVICE_NAME, server.port)
    await server.serve_until_sigterm()
