"""The LiteLLM proxy in its own venv, pointed at the same stand-in LLM, as the peer to beat."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from bench import models
from bench.suite import Process, free_port, http_answers, spawn, wait_until
from bench.tools import tool_venv

# Pinned so runs compare; the version measured is printed with the figures.
REQUIREMENT = "litellm[proxy]==1.108.7"
START_TIMEOUT_S = 180.0


@dataclass
class Peer:
    process: Process
    master_key: str

    @property
    def chat_url(self) -> str:
        return f"http://127.0.0.1:{self.process.port}/v1/chat/completions"


def config_yaml(provider_base_url: str, master_key: str) -> str:
    """One route per stand-in model: `openai/<model>` at the stand-in's /v1 base URL."""
    lines = ["model_list:"]
    for model in models.ALL:
        lines += [f'  - model_name: "{models.alias(model)}"',
                  "    litellm_params:",
                  f'      model: "openai/{model}"',
                  f'      api_base: "{provider_base_url}/v1"',
                  '      api_key: "none"']
    lines += ["litellm_settings:", "  set_verbose: false", "  telemetry: false",
              "general_settings:", f'  master_key: "{master_key}"', "  disable_spend_logs: true"]
    return "\n".join(lines) + "\n"


async def start(provider_base_url: str, log_dir: Path) -> Peer:
    bin_dir = tool_venv(".litellm-venv", [REQUIREMENT], "litellm")
    config = log_dir / "litellm.yaml"
    # A master key, as LiteLLM refuses to start without one; each request then carries it.
    master_key = "sk-bench-" + secrets.token_hex(16)
    config.write_text(config_yaml(provider_base_url, master_key))
    port = free_port()
    # The local cost map: there is no network here, and fetching it delays start-up by seconds.
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "NO_DOCS": "True"}
    process = spawn("litellm", [str(bin_dir / "litellm"), "--config", str(config), "--host", "127.0.0.1",
                                "--port", str(port), "--num_workers", "1"], env, port, log_dir)
    await wait_until(process, lambda: http_answers(f"http://127.0.0.1:{port}/health/liveliness"),
                     timeout=START_TIMEOUT_S)
    return Peer(process, master_key)


def version() -> str:
    return REQUIREMENT.split("==")[1]

