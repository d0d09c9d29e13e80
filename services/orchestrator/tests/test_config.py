"""The orchestrator's settings: unit addresses are required, the broker is optional."""

import pytest

from services.orchestrator.config import Settings

ADDRESSES = {f"LLMCHATLINKER_{unit}_ADDR": f"127.0.0.1:{port}"
             for unit, port in (("USER_UNIT", 50052), ("CHAT_UNIT", 50053), ("LLM_UNIT", 50054), ("DB_UNIT", 50055))}


@pytest.fixture
def environment(monkeypatch):
    for name in ADDRESSES | {"LLMCHATLINKER_AMQP_URL": "", "LLMCHATLINKER_QUEUE": "", "LLMCHATLINKER_MAX_IN_FLIGHT": "",
                             "LLMCHATLINKER_ORCHESTRATOR_PORT": "", "LLMCHATLINKER_MODEL_CACHE_TTL_MS": "",
                             "LLMCHATLINKER_OUTAGE_WAIT_MS": "", "LLMCHATLINKER_INTERNAL_TOKEN": "",
                             "LLMCHATLINKER_TLS_CERT": "", "LLMCHATLINKER_TLS_KEY": "", "LLMCHATLINKER_TLS_CLIENT_CA": "",
                             "LLMCHATLINKER_UNIT_TLS_CA": "", "LLMCHATLINKER_UNIT_TLS_CERT": "",
                             "LLMCHATLINKER_UNIT_TLS_KEY": ""}:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_defaults_run_on_the_in_process_queue(environment):
    for name, value in ADDRESSES.items():
        environment.setenv(name, value)
    settings = Settings.from_env()
    assert settings.address.endswith(":50051") and settings.db_unit_addr == "127.0.0.1:50055"
    assert (settings.amqp_url, settings.queue, settings.max_in_flight) == (None, "instruction_queue", 256)
    assert settings.model_cache_ttl_ms == 2000
    assert settings.outage_wait_ms == 120_000
    assert (settings.internal_token, settings.tls, settings.unit_tls) == (None, None, None)


def test_the_internal_token_and_tls_come_from_the_environment(environment, tmp_path):
    for name, value in ADDRESSES.items():
        environment.setenv(name, value)
    pem = tmp_path / "any.pem"
    pem.write_bytes(b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    environment.setenv("LLMCHATLINKER_INTERNAL_TOKEN", "t" * 40)
    for name in ("TLS_CERT", "TLS_KEY", "UNIT_TLS_CA", "UNIT_TLS_CERT", "UNIT_TLS_KEY"):
        environment.setenv(f"LLMCHATLINKER_{name}", str(pem))

    settings = Settings.from_env()

    assert settings.internal_token == "t" * 40 and "t" * 40 not in repr(settings)
    assert settings.tls.private_key == pem.read_bytes() and not settings.tls.mutual
    assert settings.unit_tls.ca == settings.unit_tls.certificate_chain == pem.read_bytes()


def test_a_missing_unit_address_fails_naming_the_variable(environment):
    for name, value in ADDRESSES.items():
        if name != "LLMCHATLINKER_LLM_UNIT_ADDR":
            environment.setenv(name, value)
    with pytest.raises(RuntimeError, match="LLMCHATLINKER_LLM_UNIT_ADDR"):
        Settings.from_env()


def test_broker_queue_and_concurrency_come_from_the_environment(environment):
    for name, value in ADDRESSES.items():
        environment.setenv(name, value)
    environment.setenv("LLMCHATLINKER_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    environment.setenv("LLMCHATLINKER_QUEUE", "other_queue")
    environment.setenv("LLMCHATLINKER_MAX_IN_FLIGHT", "32")
    settings = Settings.from_env()
    assert (settings.amqp_url, settings.queue, settings.max_in_flight) == (
        "amqp://guest:guest@127.0.0.1:5672/%2F", "other_queue", 32)
    environment.setenv("LLMCHATLINKER_MAX_IN_FLIGHT", "0")
    with pytest.raises(RuntimeError, match="LLMCHATLINKER_MAX_IN_FLIGHT"):
        Settings.from_env()


def test_the_model_cache_lifetime_comes_from_the_environment(environment):
    for name, value in ADDRESSES.items():
        environment.setenv(name, value)
    environment.setenv("LLMCHATLINKER_MODEL_CACHE_TTL_MS", "0")
    assert Settings.from_env().model_cache_ttl_ms == 0
    environment.setenv("LLMCHATLINKER_MODEL_CACHE_TTL_MS", "-1")
    with pytest.raises(RuntimeError, match="LLMCHATLINKER_MODEL_CACHE_TTL_MS"):
        Settings.from_env()


def test_a_broker_url_that_is_not_amqp_fails_naming_the_variable_without_echoing_it(environment):
    for name, value in ADDRESSES.items():
        environment.setenv(name, value)
    environment.setenv("LLMCHATLINKER_AMQP_URL", "http://guest:secret@127.0.0.1:5672/")
    with pytest.raises(RuntimeError, match="LLMCHATLINKER_AMQP_URL") as refused:
        Settings.from_env()
    assert "secret" not in str(refused.value)


def test_the_outage_wait_comes_from_the_environment(environment):
    for name, value in ADDRESSES.items():
        environment.setenv(name, value)
    environment.setenv("LLMCHATLINKER_OUTAGE_WAIT_MS", "1500")
    assert Settings.from_env().outage_wait_ms == 1500
    environment.setenv("LLMCHATLINKER_OUTAGE_WAIT_MS", "soon")
    with pytest.raises(RuntimeError, match="LLMCHATLINKER_OUTAGE_WAIT_MS"):
        Settings.from_env()
