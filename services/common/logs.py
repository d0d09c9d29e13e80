"""Logging set-up for every service's main(): the level from LLMCHATLINKER_LOG_LEVEL, text or JSON lines
from LLMCHATLINKER_LOG_FORMAT.

No line carries an API key, a user's input or a model's output, at any level: the suite's own
lines name ids, types, reasons and durations only, and the libraries that would print request
bodies or SQL parameters at DEBUG (SQLAlchemy's engine, pika's frames, aiohttp's and urllib3's
wire logs) are held at WARNING whatever the level (tests/test_observability.py checks it).
"""

import datetime
import json
import logging

from services.common import config

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_LEVEL = "INFO"
FORMATS = ("text", "json")
DEFAULT_FORMAT = "text"
# Loggers that print what passes through them (statements with their parameters, message
# frames, HTTP bodies) when asked for DEBUG or INFO.
QUIETED = ("sqlalchemy", "alembic", "pika", "aiohttp", "urllib3", "asyncio", "grpc", "opentelemetry")
# A LogRecord's own attributes; whatever else a record carries came as `extra` fields.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the record's extra
    fields (an instruction line's id, type, role, status, duration_ms, trace_id) and any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc).isoformat(
                timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update((key, value) for key, value in vars(record).items() if key not in _RECORD_ATTRIBUTES)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging() -> None:
    """Logs to stderr at LLMCHATLINKER_LOG_LEVEL (default INFO) in LLMCHATLINKER_LOG_FORMAT (text, or
    json for log shippers); raises config.SettingError for an unknown value, before anything is logged."""
    level = config.choice("LOG_LEVEL", DEFAULT_LEVEL, LEVELS)
    form = config.choice("LOG_FORMAT", DEFAULT_FORMAT, FORMATS)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if form == "json" else logging.Formatter(FORMAT))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for name in QUIETED:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
