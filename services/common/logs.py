"""Logging set-up for every service's main(): one format, the level from LLMCHATLINKER_LOG_LEVEL."""

import logging

from services.common import config

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_LEVEL = "INFO"


def configure_logging() -> None:
    """Logs to stderr at LLMCHATLINKER_LOG_LEVEL (default INFO); raises config.SettingError for an
    unknown level, before anything is logged."""
    logging.basicConfig(level=config.choice("LOG_LEVEL", DEFAULT_LEVEL, LEVELS), format=FORMAT)
