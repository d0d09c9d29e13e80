"""The suite's deadlines nest: each inner one ends before the one around it, the client's copy included."""

from llmchatlinker.client import settings as client_settings
from services import launcher
from services.common import deadlines, serving
from services.llm_unit import config as llm_unit_config


def test_the_provider_reply_ends_a_unary_call_before_the_generate_reply_call():
    assert deadlines.GENERATE_REPLY_CALL_SECONDS >= deadlines.PROVIDER_REPLY_SECONDS + deadlines.UNARY_CALL_SECONDS


def test_llm_unit_defaults_to_the_provider_reply_deadline():
    assert llm_unit_config.DEFAULT_GENERATION_TIMEOUT_MS == deadlines.PROVIDER_REPLY_SECONDS * 1000


def test_an_instruction_holds_its_generation_and_the_unary_calls_around_it():
    around = deadlines.UNARY_CALLS_AROUND_A_GENERATION * deadlines.UNARY_CALL_SECONDS

    assert deadlines.INSTRUCTION_SECONDS >= deadlines.GENERATE_REPLY_CALL_SECONDS + around


def test_the_client_waits_longer_than_the_orchestrator_works_on_an_instruction():
    assert deadlines.CLIENT_INSTRUCTION_SECONDS > deadlines.INSTRUCTION_SECONDS


def test_the_client_package_keeps_the_same_number():
    assert client_settings.DEFAULT_TIMEOUT_SECONDS == deadlines.CLIENT_INSTRUCTION_SECONDS


def test_the_launcher_waits_for_the_orchestrator_to_drain_twice():
    assert serving.SHUTDOWN_GRACE_SECONDS == deadlines.SHUTDOWN_GRACE_SECONDS
    assert launcher.STOP_GRACE_SECONDS > 2 * deadlines.SHUTDOWN_GRACE_SECONDS


def test_one_health_check_fits_in_the_launcher_s_wait_for_readiness():
    assert launcher.READY_TIMEOUT_SECONDS == deadlines.LAUNCHER_READY_SECONDS
    assert deadlines.HEALTH_CHECK_SECONDS < deadlines.LAUNCHER_READY_SECONDS
