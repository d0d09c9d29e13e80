"""What every service's main() turns on before it serves: its logging, its traces and its metrics."""

from services.common import metrics, tracing
from services.common.logs import configure_logging


def start(service: str) -> None:
    """Logging as LLMCHATLINKER_LOG_LEVEL and _LOG_FORMAT say, traces when OTEL_EXPORTER_OTLP_ENDPOINT
    is set, metrics when LLMCHATLINKER_<SERVICE>_METRICS_PORT is. Raises config.SettingError (or a
    RuntimeError for a metrics port in use) before anything listens; call it before building the
    servers, which install their interceptors only for what is on."""
    configure_logging()
    tracing.configure(service)
    metrics.serve(service)


def unit_label(service_name: str) -> str:
    """"llmchatlinker.user.v1.UserService" -> "user_unit": the `unit` label of a unit's database."""
    parts = service_name.split(".")
    return f"{parts[1]}_unit" if len(parts) > 2 else service_name
