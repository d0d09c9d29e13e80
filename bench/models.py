"""The stand-in models each scenario asks for: options ride in the model name (testkit/scenario.py)."""

from __future__ import annotations

# Scenario 1: a provider that takes 500 ms and answers one token.
SLOW = "bench@latency_ms=500,tokens=1"
# Scenario 2: answers at once; only the first token's arrival is timed.
FAST = "bench@tokens=3"
# Scenario 3: 50 tokens, 20 ms apart.
RELAY_TOKENS, RELAY_INTERVAL_MS = 50, 20
RELAY = f"bench@tokens={RELAY_TOKENS},interval_ms={RELAY_INTERVAL_MS}"
# Scenarios 5 and 7: a short reply, so the suite's own cost dominates.
SHORT = "bench@tokens=5"

ALL = (SLOW, FAST, RELAY, SHORT)


def alias(model: str) -> str:
    """The name LiteLLM routes: it reads commas in a requested model as several models."""
    return "bench-" + "-".join(part.replace("=", "") for part in model.partition("@")[2].split(","))
