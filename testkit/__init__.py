"""Test kit: a stand-in LLM provider server for tests and benchmarks, and what the test trees share
(backends: PostgreSQL and RabbitMQ; units, llm_unit: the units under test; suite, ports, clock)."""

from __future__ import annotations

import importlib

_HOMES = {"LlmServer": "llm_server", "ThreadedLlmServer": "threaded", "run_in_thread": "threaded"}
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> object:
    # Imported lazily so `python -m testkit.llm_server` does not load the module twice.
    if name in _HOMES:
        return getattr(importlib.import_module(f"testkit.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
