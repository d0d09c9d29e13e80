"""The orchestrator process: the one place that wires the rooms together (front door, queue, pipeline, instructions, units)."""

from __future__ import annotations

import asyncio
import logging
import signal
import uuid

from llmchatlinker.orchestrator.v1 import orchestrator_service_pb2_grpc as orchestrator_grpc
from services.common import deadlines, metrics, telemetry, tracing
from services.common.admission import Admission
from services.common.serving import SHUTDOWN_GRACE_SECONDS, AsyncServer, failing_in_one_line
from services.orchestrator.config import Settings
from services.orchestrator.frontdoor import SERVICE_NAME, OrchestratorServicer
from services.orchestrator.instructions.access import Gate
from services.orchestrator.instructions.control import ControlUnit
from services.orchestrator.pipeline.cycle import Cycle
from services.orchestrator.pipeline.results import Results
from services.orchestrator.queue.amqp import AmqpQueue
from services.orchestrator.queue.depth import DepthPoller, watch_in_process
from services.orchestrator.queue.inprocess import InProcessQueue
from services.orchestrator.queue.switchboard import Switchboard
from services.orchestrator.units.channels import UnitChannels
from services.orchestrator.units.gateways import Units

log = logging.getLogger(__name__)

# How long start() waits for the broker before serving anyway (the connection keeps retrying).
BROKER_WAIT_SECONDS = 30.0
# How often the health service is brought up to date with what the replica can do.
HEALTH_EVERY_SECONDS = 0.5
# Every prefetch slot taken and none finished for this long: stuck (NOT_SERVING). As long as one
# instruction may take (its calls' deadlines added up), so long generations are not "stuck".
STUCK_AFTER_SECONDS = deadlines.INSTRUCTION_SECONDS


class OrchestratorServer:
    """The front door, the consumer and the unit channels, started and stopped together."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.replica_id = uuid.uuid4().hex[:12]
        if settings.amqp_url:
            self.transport = AmqpQueue(settings.amqp_url, settings.queue, settings.max_in_flight, self.replica_id)
        else:
            self.transport = InProcessQueue(settings.queue, settings.max_in_flight, self.replica_id)
        self.switchboard = Switchboard()
        self._servicer = OrchestratorServicer(self.transport, self.switchboard, None, settings.max_streams_per_caller)
        self._grpc = AsyncServer(lambda server: orchestrator_grpc.add_OrchestratorServiceServicer_to_server(
            self._servicer, server), [SERVICE_NAME], settings.address, Admission(tls=settings.tls),
            options=[("grpc.max_receive_message_length", settings.max_request_bytes)])
        self.port = self._grpc.port
        self._channels: UnitChannels | None = None
        self.cycle: Cycle | None = None
        self._health_watch: asyncio.Task | None = None
        self._results: Results | None = None
        self._recoveries: set[asyncio.Task] = set()
        self._depth: DepthPoller | None = None

    async def start(self) -> "OrchestratorServer":
        s = self.settings
        self._channels = UnitChannels.connect(s.user_unit_addr, s.chat_unit_addr, s.llm_unit_addr, s.db_unit_addr,
                                              internal_token=s.internal_token, tls=s.unit_tls)
        units = Units.over(self._channels, s.model_cache_ttl_ms / 1000, s.key_cache_ttl_ms / 1000)
        gate = Gate(units, s.require_key, None if s.queue_role == "none" else s.queue_role)
        self._servicer.gate = gate
        self._results = Results(units)
        self.cycle = Cycle(self.transport, ControlUnit(units, s.max_echo_chars, s.max_chat_load_bytes), self._results,
                           self.switchboard, outage_wait_s=s.outage_wait_ms / 1000, gate=gate)
        self.transport.start(self.cycle.on_message, self.switchboard.on_reply)
        try:
            await self.transport.ready(BROKER_WAIT_SECONDS)
        except asyncio.TimeoutError:
            log.warning("no broker after %.0f s; serving, and still trying to connect", BROKER_WAIT_SECONDS)
        self.serving = self._can_serve()
        self._grpc.set_serving(self.serving)
        await self._grpc.start()
        self._health_watch = asyncio.create_task(self._watch_health())
        if metrics.enabled():
            if s.amqp_url:
                self._depth = DepthPoller(s.amqp_url, s.queue).start()
            else:
                watch_in_process(self.transport)
        log.info("orchestrator on port %d, queue %s (%s)", self.port, s.queue,
                 "RabbitMQ" if s.amqp_url else "in-process")
        if not s.require_key:
            log.warning("callers are not authenticated (LLMCHATLINKER_AUTH=off): whoever reaches %s may do "
                        "everything; serving on loopback only", s.address)
        return self

    def _can_serve(self) -> bool:
        """Consuming (or standing by for the replica that does), and not every prefetch slot stuck:
        what the health service reports."""
        return self.transport.attached and self.cycle.stuck_for(self.settings.max_in_flight) < STUCK_AFTER_SECONDS

    async def _watch_health(self) -> None:
        lost = self.transport.connections_lost
        while True:
            await asyncio.sleep(HEALTH_EVERY_SECONDS)
            if lost != self.transport.connections_lost and self.transport.connected:
                lost = self.transport.connections_lost
                recovery = asyncio.create_task(self._recover_replies())
                self._recoveries.add(recovery)
                recovery.add_done_callback(self._recoveries.discard)
            serving = self._can_serve()
            if serving != self.serving:
                self.serving = serving
                self._grpc.set_serving(serving)
                if serving:
                    log.info("SERVING again: consuming %s", self.settings.queue)
                else:
                    log.warning("NOT_SERVING: %s", "every instruction slot is stuck" if self.transport.attached
                                else f"not consuming {self.settings.queue} (no broker connection)")

    async def _recover_replies(self) -> None:
        """Back on the broker after losing it: the reply queue is new, and a final result another
        replica published meanwhile went nowhere. A Submit call still waiting gets it from the
        ledger (its listener's key is the result's key there); one still running arrives as usual."""
        for key in self.switchboard.listening():
            try:
                stored = await self._results.stored_under(key)
            except Exception as error:  # noqa: BLE001 - best effort: the caller may still get the reply
                log.warning("could not look up the result of %s after reconnecting: %s", key, error)
                continue
            if stored is not None:
                self.switchboard.deliver(key, stored)

    async def stop(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Graceful: take no new instructions, finish those in progress, then close."""
        if self._health_watch is not None:
            self._health_watch.cancel()
        if self._depth is not None:
            self._depth.stop()
        await self.transport.stop_consuming()
        if self.cycle is not None:
            await self.cycle.drain(grace)
        await self._grpc.stop(grace)
        await self.transport.close()
        if self._channels is not None:
            await self._channels.close()
        tracing.flush()


def build_server(settings: Settings) -> OrchestratorServer:
    return OrchestratorServer(settings)


async def serve(settings: Settings) -> None:
    with failing_in_one_line("orchestrator"):  # a port in use, a broker refusing us: no retry can help
        server = build_server(settings)
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop_requested.set)
        await server.start()
    await stop_requested.wait()
    log.info("shutting down")
    await server.stop()


def main() -> None:
    with failing_in_one_line("orchestrator"):
        telemetry.start("orchestrator")
        settings = Settings.from_env()
    asyncio.run(serve(settings))
