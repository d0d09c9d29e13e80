"""Prometheus metrics every service shares: its gRPC calls, its database, and the port they are read on.

One registry per process (prometheus_client's default). A service serves it on
LLMCHATLINKER_<SERVICE>_METRICS_PORT; unset, nothing listens and the servers and channels install
no metrics interceptor. Names follow go-grpc-prometheus for gRPC (grpc_server_handled_total, ...)
and Prometheus' conventions elsewhere (seconds, _total). Label values come from bounded sets:
method names, status codes, instruction types, provider and model names; never an id.
"""

from __future__ import annotations

import logging
import threading
import time

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from services.common import config

log = logging.getLogger(__name__)

# Seconds: from a cached read (sub-millisecond) to a unit call's deadline (10 s) and beyond.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 130)
_GRPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")

SERVER_STARTED = Counter("grpc_server_started", "RPCs started on the server.", _GRPC_LABELS)
SERVER_HANDLED = Counter("grpc_server_handled", "RPCs completed on the server, by status code.",
                         (*_GRPC_LABELS, "grpc_code"))
SERVER_SECONDS = Histogram("grpc_server_handling_seconds", "Time the server took to answer an RPC (to its "
                           "last message, for streams).", _GRPC_LABELS, buckets=LATENCY_BUCKETS)
CLIENT_STARTED = Counter("grpc_client_started", "RPCs started by this client.", _GRPC_LABELS)
CLIENT_HANDLED = Counter("grpc_client_handled", "RPCs completed as this client saw them, by status code.",
                         (*_GRPC_LABELS, "grpc_code"))
CLIENT_SECONDS = Histogram("grpc_client_handling_seconds", "Time an RPC took as this client saw it (to its "
                           "last message, for streams).", _GRPC_LABELS, buckets=LATENCY_BUCKETS)

DATABASE_SECONDS = Histogram("llmchatlinker_database_statement_seconds", "Time one SQL statement took, "
                             "by unit.", ("unit",), buckets=LATENCY_BUCKETS)
DATABASE_CALL_SECONDS = Histogram("llmchatlinker_database_seconds_per_call", "Time one RPC of a thread-pool unit "
                                  "spent in SQL statements, by method.", ("grpc_service", "grpc_method"),
                                  buckets=LATENCY_BUCKETS)
DATABASE_POOL_IN_USE = Gauge("llmchatlinker_database_pool_connections_in_use",
                             "Database connections checked out of the unit's pool.", ("unit",))

_enabled = False
# The database time of the RPC this thread is answering (thread-pool units answer one per thread).
_this_call = threading.local()


def enabled() -> bool:
    """Whether this process serves its metrics (and so counts its gRPC calls and statements)."""
    return _enabled


def enable() -> None:
    """Counts from now on without serving the registry (tests read it in-process)."""
    global _enabled
    _enabled = True


def port_setting(service: str) -> str:
    """The setting of a service's metrics port, without the LLMCHATLINKER_ prefix."""
    return f"{service.upper()}_METRICS_PORT"


def serve(service: str) -> int | None:
    """Serves the registry on HOST:LLMCHATLINKER_<SERVICE>_METRICS_PORT; the port, or None when unset.
    A port in use is a RuntimeError naming it."""
    port = config.integer(port_setting(service), 0, minimum=0, maximum=config.HIGHEST_PORT)
    if not port:
        return None
    host = config.optional("HOST", "127.0.0.1")
    try:
        start_http_server(port, addr=host)
    except OSError as error:
        raise RuntimeError(f"cannot serve metrics on {host}:{port} ({config.PREFIX}{port_setting(service)}): "
                           f"{error.strerror or error}") from None
    enable()
    log.info("metrics on http://%s:%d/metrics", host, port)
    return port


def split_method(full_method: str) -> tuple[str, str]:
    """"/pkg.Service/Method" -> ("pkg.Service", "Method")."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service, method


def watch_database(database, unit: str) -> None:
    """Times every statement of `database` (a services.common.db.Database) and reports its pool's
    connections in use, labelled `unit`. Two SQLAlchemy events per statement, and a timer for those
    run on the DB-API cursor (db.run_on_cursor); the pool is read at scrape time."""
    from sqlalchemy import event

    from services.common.db import time_cursor_statements

    histogram = DATABASE_SECONDS.labels(unit)
    engine = database.engine

    @event.listens_for(engine, "before_cursor_execute")
    def before(connection, _cursor, _statement, _parameters, _context, _executemany):
        connection.info.setdefault("llmchatlinker_started", []).append(time.perf_counter())

    def took(seconds: float) -> None:
        histogram.observe(seconds)
        so_far = getattr(_this_call, "seconds", None)
        if so_far is not None:
            _this_call.seconds = so_far + seconds

    @event.listens_for(engine, "after_cursor_execute")
    def after(connection, _cursor, _statement, _parameters, _context, _executemany):
        took(time.perf_counter() - connection.info["llmchatlinker_started"].pop())

    @event.listens_for(engine, "handle_error")
    def failed(context):
        started = context.connection.info.get("llmchatlinker_started") if context.connection is not None else None
        if started:
            took(time.perf_counter() - started.pop())

    for each in database.engines:
        time_cursor_statements(each, took)

    def in_use() -> float:
        checked_out = getattr(engine.pool, "checkedout", None)  # dispose() makes a new pool
        return checked_out() if checked_out is not None else 0

    DATABASE_POOL_IN_USE.labels(unit).set_function(in_use)


def call_began() -> None:
    """A thread-pool unit's RPC starts on this thread: its statements' time is added up from here."""
    _this_call.seconds = 0.0


def call_ended(grpc_service: str, grpc_method: str) -> None:
    """...and ends: the time its statements took is one observation of DATABASE_CALL_SECONDS."""
    seconds, _this_call.seconds = getattr(_this_call, "seconds", None), None
    if seconds is not None:
        DATABASE_CALL_SECONDS.labels(grpc_service, grpc_method).observe(seconds)
