"""Runs a gRPC server with the standard health service, reflection, graceful SIGTERM and its admission rules."""

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common import limits, metrics, telemetry
from services.common.admission import OPEN, Admission, AsyncTokenInterceptor, TokenInterceptor, server_credentials
from services.common.deadlines import SHUTDOWN_GRACE_SECONDS
from services.common.interceptors import server_interceptors
from services.common.retention import Pruner

log = logging.getLogger(__name__)

# Message limits and keepalive shared by every server of the suite.
SERVER_OPTIONS = [
    *limits.MESSAGE_SIZE_OPTIONS,
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    # gRPC sets SO_REUSEPORT by default: a second suite would then bind the same ports and clients
    # would reach either at random. Without it, a port in use is an error at start.
    ("grpc.so_reuseport", 0),
]

Register = Callable[[grpc.Server], None]


def _add_health_and_reflection(server, service_names: Iterable[str], experimental_non_blocking: bool):
    names = list(service_names)
    health_servicer = health.HealthServicer(
        experimental_non_blocking=experimental_non_blocking,
        experimental_thread_pool=futures.ThreadPoolExecutor(max_workers=1),
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in names + [""]:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(names + [health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    return health_servicer


# Worker threads of a thread-pool server. The handlers hold the GIL for most of their time, so
# more threads add contention, not throughput: with 32, 64 clients got ~25-40 % fewer
# instructions/s than with 8 (bench throughput, A/B on one loaded 2-vCPU box). 8 still
# overlaps the waits on the database and its locks.
THREADED_MAX_WORKERS = 8


def listen(server, address: str, admission: Admission = OPEN) -> int:
    """Binds `address` (port 0: any free port), over TLS when the admission has it; the port bound.
    A port in use is an error naming it."""
    try:
        if admission.tls is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, server_credentials(admission.tls))
    except RuntimeError:
        port = 0
    if not port:
        raise RuntimeError(f"cannot listen on {address}: the port is in use (another suite running?) "
                           "or the address is not this machine's")
    return port


class ThreadedServer:
    """A thread-pool gRPC server (for the database-bound units)."""

    def __init__(
        self,
        register: Register,
        service_names: Iterable[str],
        address: str,
        max_workers: int = THREADED_MAX_WORKERS,
        on_stop: Callable[[], None] | None = None,
        admission: Admission = OPEN,
    ):
        # Runs after the server has drained, e.g. to close the unit's database connections.
        self._on_stop = on_stop
        self._pruner: Pruner | None = None
        interceptors = server_interceptors(asynchronous=False)  # first: it counts refusals too
        if admission.internal_token:
            interceptors.append(TokenInterceptor(admission.internal_token, admission.domain))
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), options=SERVER_OPTIONS,
                                   interceptors=interceptors)
        register(self._server)
        self._health = _add_health_and_reflection(self._server, service_names, experimental_non_blocking=True)
        self.port = listen(self._server, address, admission)

    @classmethod
    def on_database(cls, database, build_servicer: Callable[[object], object], add_servicer: Callable,
                    service_name: str, address: str, admission: Admission = OPEN,
                    pruner: Pruner | None = None) -> "ThreadedServer":
        """A server of `build_servicer(database)` that disposes of the database when it stops, or at
        once when it cannot be built (a failed migration, a port in use). Its `pruner` (of the same
        database) runs while it serves."""
        def stop_using_database() -> None:
            if pruner is not None:
                pruner.stop()
            database.dispose()

        try:
            if metrics.enabled():
                metrics.watch_database(database, telemetry.unit_label(service_name))
            servicer = build_servicer(database)
            server = cls(lambda server: add_servicer(servicer, server), [service_name], address,
                         on_stop=stop_using_database, admission=admission)
        except BaseException:
            database.dispose()
            raise
        server._pruner = pruner
        return server

    def start(self) -> "ThreadedServer":
        self._server.start()
        if self._pruner is not None:
            self._pruner.start()
        return self

    def stop(self, grace: float | None = SHUTDOWN_GRACE_SECONDS) -> None:
        """Reports NOT_SERVING first, so load balancers stop routing, then drains."""
        self._health.enter_graceful_shutdown()
        try:
            self._server.stop(grace).wait()
        finally:
            if self._on_stop is not None:
                self._on_stop()

    def serve_until_sigterm(self) -> None:
        stopped = threading.Event()

        def on_signal(signum, _frame):
            log.info("signal %s: shutting down", signum)
            threading.Thread(target=lambda: (self.stop(), stopped.set()), daemon=True).start()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        # Wait in slices: the kernel may deliver SIGTERM to a gRPC thread, and Python runs the
        # handler only when the main thread next runs bytecode; an untimed wait never would.
        while not stopped.wait(timeout=0.5):
            pass


class AsyncServer:
    """A grpc.aio server (for the units that wait on slow I/O)."""

    def __init__(self, register: Register, service_names: Iterable[str], address: str, admission: Admission = OPEN,
                 options: Iterable[tuple[str, object]] = ()):
        """`options` replace SERVER_OPTIONS of the same name (the front door's smaller message limit)."""
        interceptors = server_interceptors(asynchronous=True)  # first: it counts refusals too
        if admission.internal_token:
            interceptors.append(AsyncTokenInterceptor(admission.internal_token, admission.domain))
        merged = list({**dict(SERVER_OPTIONS), **dict(options)}.items())
        self._server = grpc.aio.server(options=merged, interceptors=interceptors)
        register(self._server)
        self._service_names = list(service_names)
        self._health = _add_health_and_reflection(self._server, self._service_names, experimental_non_blocking=True)
        self.port = listen(self._server, address, admission)

    def set_serving(self, serving: bool) -> None:
        """What the health service reports for every service of this server (and for "")."""
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in [*self._service_names, ""]:
            self._health.set(name, status)

    async def start(self) -> "AsyncServer":
        await self._server.start()
        return self

    async def stop(self, grace: float | None = SHUTDOWN_GRACE_SECONDS) -> None:
        self._health.enter_graceful_shutdown()
        await self._server.stop(grace)

    async def serve_until_sigterm(self) -> None:
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop_requested.set)
        await self.start()
        await stop_requested.wait()
        log.info("shutting down")
        await self.stop()


@contextlib.contextmanager
def failing_in_one_line(name: str) -> Iterator[None]:
    """Around a service's start: a RuntimeError (a missing setting, a database it cannot open, a
    port in use, a broker refusing it) ends the process with one line naming it, not a traceback."""
    try:
        yield
    except RuntimeError as error:
        raise SystemExit(f"{name}: {error}") from None


def run_threaded_unit(name: str, settings_from_env: Callable[[], object], build_server: Callable[[object], ThreadedServer]) -> None:
    """The main() of a thread-pool unit: settings from the environment, then serve until SIGTERM.
    A missing variable, a database it cannot open or a port in use ends the process with one line
    naming it (config.SettingError, db.DatabaseUnreachable, the port's RuntimeError)."""
    with failing_in_one_line(name):
        telemetry.start(name)
        server = build_server(settings_from_env())
    log.info("%s listening on port %d", name, server.port)
    server.serve_until_sigterm()
    log.info("%s stopped", name)
