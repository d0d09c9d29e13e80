"""`llmchatlinker status`: each service's health, the queue's depth and dead letters, the orchestrator's
instructions in flight and its oldest unfinished one, on one screen (or as JSON with --json).

It reads the same LLMCHATLINKER_* settings as `up`: the services' addresses from HOST and the
_PORT settings, the queue from AMQP_URL and QUEUE (asked directly, with a passive declare), and
the orchestrator's own figures from its metrics port (LLMCHATLINKER_ORCHESTRATOR_METRICS_PORT),
the only place they exist outside its process.
"""

from __future__ import annotations

import argparse
import json
import urllib.request
from collections.abc import Mapping

from services import healthcheck, launcher
from services.common import config, metrics

HEALTH_SECONDS = 2.0
SCRAPE_SECONDS = 3.0
# Gauges of the orchestrator's metrics, by the key they have here.
ORCHESTRATOR_GAUGES = {
    "in_flight": "llmchatlinker_instructions_in_flight",
    "oldest_unfinished_seconds": "llmchatlinker_oldest_instruction_age_seconds",
    "queue_depth": "llmchatlinker_queue_depth",
    "dead_letters": "llmchatlinker_dead_letters",
}


def add_parser(commands) -> None:
    status = commands.add_parser(
        "status", help="each service's health, the queue's depth and dead letters, instructions in flight",
        description="Asks each service's health, RabbitMQ for the instruction queue's depth and dead letters "
                    "(LLMCHATLINKER_AMQP_URL), and the orchestrator's metrics for its instructions in flight "
                    "(LLMCHATLINKER_ORCHESTRATOR_METRICS_PORT). Exit status 0 when every service is SERVING.")
    status.add_argument("--json", action="store_true", help="print one JSON object, for scripts")


def gather(environ: Mapping[str, str]) -> dict:
    """Everything the screen shows, as one dict (what --json prints)."""
    report: dict = {"services": {}, "queue": None, "orchestrator": None}
    for service in ("orchestrator", *launcher.UNITS):
        address = _address(service, environ)
        report["services"][service] = {"address": address,
                                       "health": healthcheck.status(address, timeout=HEALTH_SECONDS)}
    figures = _orchestrator_figures(environ)
    report["orchestrator"] = {key: figures.get(key) for key in ("in_flight", "oldest_unfinished_seconds")} \
        if figures is not None else None
    queue = config.optional("QUEUE", "instruction_queue", environ)
    amqp_url = config.optional("AMQP_URL", "", environ)
    if amqp_url:
        report["queue"] = {"name": queue, "broker": "RabbitMQ", **_broker_depths(amqp_url, queue)}
    elif figures is not None:
        report["queue"] = {"name": queue, "broker": "in-process", "depth": figures.get("queue_depth"),
                           "dead_letters": figures.get("dead_letters")}
    report["healthy"] = all(entry["health"] == "SERVING" for entry in report["services"].values())
    return report


def _address(service: str, environ: Mapping[str, str]) -> str:
    """Where to reach a service: the clients' ORCHESTRATOR_ADDR for the front door when set, else as `up` does."""
    if service == "orchestrator" and config.optional("ORCHESTRATOR_ADDR", "", environ):
        return config.optional("ORCHESTRATOR_ADDR", "", environ)
    return launcher.address(service, environ)


def _broker_depths(url: str, queue: str) -> dict:
    from services.orchestrator.queue.depth import connect, message_counts

    try:
        connection = connect(url)
    except Exception as error:  # noqa: BLE001 - unreachable: say so on the screen
        return {"depth": None, "dead_letters": None, "error": f"cannot reach RabbitMQ ({type(error).__name__})"}
    try:
        depth, dead = message_counts(connection, queue)
        return {"depth": depth, "dead_letters": dead}
    finally:
        connection.close()


def _orchestrator_figures(environ: Mapping[str, str]) -> dict | None:
    """The orchestrator's gauges from its metrics port; None when it has none or does not answer."""
    port = config.integer(metrics.port_setting("orchestrator"), 0, minimum=0, maximum=config.HIGHEST_PORT,
                          environ=environ)
    if not port:
        return None
    host = _address("orchestrator", environ).rpartition(":")[0]
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=SCRAPE_SECONDS) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    from prometheus_client.parser import text_string_to_metric_families

    values = {sample.name: sample.value for family in text_string_to_metric_families(text)
              for sample in family.samples}
    return {key: values.get(name) for key, name in ORCHESTRATOR_GAUGES.items()}


def render(report: dict, version: str) -> str:
    lines = [f"llmchatlinker {version}", f"  {'service':<13} {'address':<22} health"]
    for service, entry in report["services"].items():
        lines.append(f"  {service:<13} {entry['address']:<22} {entry['health']}")
    queue = report["queue"]
    if queue is None:
        lines.append("queue: in-process (set LLMCHATLINKER_ORCHESTRATOR_METRICS_PORT to see its depth)")
    elif queue.get("error"):
        lines.append(f"queue {queue['name']}: {queue['error']}")
    else:
        lines.append(f"queue {queue['name']} ({queue['broker']}): {_count(queue['depth'])} waiting, "
                     f"{_count(queue['dead_letters'])} dead letters ({queue['name']}.dead)")
    orchestrator = report["orchestrator"]
    if orchestrator is None:
        lines.append("orchestrator: in flight unknown (no metrics: set LLMCHATLINKER_ORCHESTRATOR_METRICS_PORT)")
    else:
        lines.append(f"orchestrator: {_count(orchestrator['in_flight'])} instructions in flight, oldest unfinished "
                     f"{_age(orchestrator['oldest_unfinished_seconds'])}")
    return "\n".join(lines)


def _count(value) -> str:
    return "?" if value is None or value < 0 else f"{value:.0f}"


def _age(seconds) -> str:
    if seconds is None:
        return "?"
    return "none" if seconds <= 0 else f"{seconds:.1f} s"


def run(args: argparse.Namespace, environ: Mapping[str, str], version: str) -> int:
    try:
        report = gather(environ)
    except config.SettingError as error:
        print(f"llmchatlinker status: {error}")
        return 2
    print(json.dumps({"version": version, **report}, indent=2) if args.json else render(report, version))
    return 0 if report["healthy"] else 1
