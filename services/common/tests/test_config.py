"""The settings readers: defaults when unset, and an error naming the variable for each bad value."""

import logging

import pytest

from services.common import config, logs
from services.common.config import SettingError


def test_an_unset_or_blank_variable_gives_the_default():
    environ = {"LLMCHATLINKER_TRIES": "  "}

    assert config.integer("TRIES", 3, environ=environ) == 3
    assert config.milliseconds("WAIT_MS", 250, environ=environ) == 250
    assert config.url("BROKER_URL", schemes=config.AMQP_SCHEMES, environ=environ) is None
    assert config.choice("MODE", "fast", ("fast", "slow"), environ=environ) == "fast"


def test_readers_take_the_process_environment_by_default(monkeypatch):
    monkeypatch.setenv("LLMCHATLINKER_TRIES", " 7 ")

    assert config.integer("TRIES", 3) == 7


def test_a_missing_required_variable_is_named():
    with pytest.raises(SettingError, match='environment variable "LLMCHATLINKER_USER_UNIT_ADDR" not set'):
        config.required("USER_UNIT_ADDR", environ={})


def test_a_setting_error_is_a_runtime_error_as_before():
    assert issubclass(SettingError, RuntimeError)


def test_integer_must_be_a_whole_number():
    with pytest.raises(SettingError,
                       match="^environment variable \"LLMCHATLINKER_TRIES\" must be a whole number, not '2.5'$"):
        config.integer("TRIES", 3, environ={"LLMCHATLINKER_TRIES": "2.5"})


def test_integer_keeps_within_its_bounds():
    environ = {"LLMCHATLINKER_TRIES": "0"}

    with pytest.raises(SettingError, match='^environment variable "LLMCHATLINKER_TRIES" must be at least 1, not 0$'):
        config.integer("TRIES", 3, minimum=1, environ=environ)
    with pytest.raises(SettingError, match='^environment variable "LLMCHATLINKER_TRIES" must be at most -1, not 0$'):
        config.integer("TRIES", 3, maximum=-1, environ=environ)
    assert config.integer("TRIES", 3, minimum=0, maximum=0, environ=environ) == 0


def test_milliseconds_names_its_unit_in_the_message():
    with pytest.raises(SettingError, match="must be a whole number of milliseconds, not '2s'$"):
        config.milliseconds("WAIT_MS", 250, environ={"LLMCHATLINKER_WAIT_MS": "2s"})
    with pytest.raises(SettingError, match='^environment variable "LLMCHATLINKER_WAIT_MS" must be at least 1 ms, not 0$'):
        config.milliseconds("WAIT_MS", 250, minimum=1, environ={"LLMCHATLINKER_WAIT_MS": "0"})


def test_milliseconds_are_not_negative_unless_allowed():
    with pytest.raises(SettingError, match="must be at least 0 ms, not -5$"):
        config.milliseconds("WAIT_MS", 250, environ={"LLMCHATLINKER_WAIT_MS": "-5"})


def test_a_duration_variable_is_named_for_its_unit():
    with pytest.raises(ValueError, match="_MS"):
        config.milliseconds("WAIT", 250, environ={})


def test_port_is_zero_to_65535():
    assert config.port("USER_UNIT_PORT", 50052, environ={"LLMCHATLINKER_USER_UNIT_PORT": "0"}) == 0
    with pytest.raises(SettingError, match='"LLMCHATLINKER_USER_UNIT_PORT" must be at most 65535, not 70000$'):
        config.port("USER_UNIT_PORT", 50052, environ={"LLMCHATLINKER_USER_UNIT_PORT": "70000"})


@pytest.mark.parametrize("value", ["postgresql+psycopg2://app:pw@db/x", "sqlite:///var/x.db", "SQLite://"])
def test_url_accepts_its_schemes_with_or_without_a_driver(value):
    environ = {"LLMCHATLINKER_DATABASE_URL": value}

    assert config.url("DATABASE_URL", schemes=config.DATABASE_SCHEMES, environ=environ) == value


def test_url_refuses_another_scheme_without_repeating_the_password():
    environ = {"LLMCHATLINKER_DATABASE_URL": "mysql://app:s3cret@db/x"}

    with pytest.raises(SettingError) as raised:
        config.url("DATABASE_URL", schemes=config.DATABASE_SCHEMES, environ=environ)

    message = str(raised.value)
    assert message == ("environment variable \"LLMCHATLINKER_DATABASE_URL\" must be a postgresql or sqlite URL, "
                       "not a 'mysql' one")
    assert "s3cret" not in message


def test_url_refuses_a_value_without_a_scheme():
    environ = {"LLMCHATLINKER_AMQP_URL": "guest:s3cret@rabbit:5672"}

    with pytest.raises(SettingError, match=r'"LLMCHATLINKER_AMQP_URL" must be a URL \(amqp or amqps://\.\.\.\), '
                                           r"and it has no scheme$") as raised:
        config.url("AMQP_URL", schemes=config.AMQP_SCHEMES, environ=environ)
    assert "s3cret" not in str(raised.value)


def test_a_required_url_must_be_set():
    with pytest.raises(SettingError, match='"LLMCHATLINKER_DB_UNIT_DATABASE_URL" not set'):
        config.url("DB_UNIT_DATABASE_URL", schemes=config.DATABASE_SCHEMES, required=True, environ={})


def test_choice_ignores_case_and_names_the_choices():
    assert config.choice("MODE", "fast", ("fast", "slow"), environ={"LLMCHATLINKER_MODE": "SLOW"}) == "slow"
    with pytest.raises(SettingError, match="\"LLMCHATLINKER_MODE\" must be one of fast, slow, not 'medium'$"):
        config.choice("MODE", "fast", ("fast", "slow"), environ={"LLMCHATLINKER_MODE": "medium"})


def test_unit_settings_check_the_database_url(monkeypatch):
    monkeypatch.setenv("LLMCHATLINKER_CHAT_UNIT_DATABASE_URL", "chat.db")

    with pytest.raises(SettingError, match="LLMCHATLINKER_CHAT_UNIT_DATABASE_URL"):
        config.UnitSettings.read_env("CHAT_UNIT", 50053)


def test_the_log_level_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("LLMCHATLINKER_LOG_LEVEL", "warning")
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)

    logs.configure_logging()

    assert root.level == logging.WARNING


def test_an_unknown_log_level_is_named(monkeypatch):
    monkeypatch.setenv("LLMCHATLINKER_LOG_LEVEL", "chatty")

    with pytest.raises(SettingError, match='"LLMCHATLINKER_LOG_LEVEL" must be one of DEBUG, INFO, WARNING'):
        logs.configure_logging()
