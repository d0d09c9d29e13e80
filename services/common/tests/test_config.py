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


TOKEN = "an-internal-token-of-32-chars-ok"
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_the_internal_token_is_unset_by_default_and_a_weak_one_is_refused_without_repeating_it():
    assert config.internal_token(environ={}) is None
    assert config.internal_token(environ={"LLMCHATLINKER_INTERNAL_TOKEN": TOKEN}) == TOKEN
    with pytest.raises(SettingError, match='^environment variable "LLMCHATLINKER_INTERNAL_TOKEN" must be at least 32 '
                                           r"characters, not 6 \(e\.g\. `openssl rand -hex 32`\)$") as raised:
        config.internal_token(environ={"LLMCHATLINKER_INTERNAL_TOKEN": "s3cret"})
    assert "s3cret" not in str(raised.value)
    with pytest.raises(SettingError, match="must be printable ASCII without spaces"):
        config.internal_token(environ={"LLMCHATLINKER_INTERNAL_TOKEN": "é" * 32})


@pytest.mark.parametrize(("address", "loopback"), [
    ("127.0.0.1:50052", True), ("127.3.2.1:0", True), ("localhost:50052", True), ("[::1]:50052", True),
    ("0.0.0.0:50052", False), ("[::]:50052", False), (":50052", False), ("10.0.0.7:50052", False),
    ("user-unit:50052", False),
])
def test_loopback_is_this_machine_only(address, loopback):
    assert config.is_loopback(address) is loopback


def test_a_unit_beyond_loopback_needs_the_token_or_client_certificates():
    with pytest.raises(SettingError, match=r"^listening on 0\.0\.0\.0:50052 \(LLMCHATLINKER_HOST\), beyond loopback, "
                                           r"with no internal credential: .* set LLMCHATLINKER_INTERNAL_TOKEN"):
        config.UnitSettings("0.0.0.0:50052", "sqlite:///unit.db")
    with pytest.raises(SettingError, match="beyond loopback"):  # TLS alone says nothing about the caller
        config.UnitSettings("0.0.0.0:50052", "sqlite:///unit.db", tls=config.ServerTls(b"cert", b"key"))

    config.UnitSettings("127.0.0.1:50052", "sqlite:///unit.db")
    config.UnitSettings("0.0.0.0:50052", "sqlite:///unit.db", internal_token=TOKEN)
    config.UnitSettings("0.0.0.0:50052", "sqlite:///unit.db", tls=config.ServerTls(b"cert", b"key", b"ca"))


def test_unit_settings_read_the_token_and_tls_and_never_show_them(monkeypatch, tmp_path):
    for name in ("cert", "key", "ca"):
        (tmp_path / f"{name}.pem").write_text(PEM.replace("CERTIFICATE", name.upper()))
    monkeypatch.setenv("LLMCHATLINKER_CHAT_UNIT_DATABASE_URL", "sqlite:///chat.db")
    monkeypatch.setenv("LLMCHATLINKER_INTERNAL_TOKEN", TOKEN)
    monkeypatch.setenv("LLMCHATLINKER_TLS_CERT", str(tmp_path / "cert.pem"))
    monkeypatch.setenv("LLMCHATLINKER_TLS_KEY", str(tmp_path / "key.pem"))
    monkeypatch.setenv("LLMCHATLINKER_TLS_CLIENT_CA", str(tmp_path / "ca.pem"))

    settings = config.UnitSettings.read_env("CHAT_UNIT", 50053)

    assert settings.internal_token == TOKEN
    assert settings.tls == config.ServerTls(PEM.replace("CERTIFICATE", "CERT").encode(),
                                            PEM.replace("CERTIFICATE", "KEY").encode(),
                                            PEM.replace("CERTIFICATE", "CA").encode())
    assert settings.tls.mutual
    assert TOKEN not in repr(settings) and "BEGIN" not in repr(settings)


def test_tls_files_must_be_readable_pem_and_a_certificate_comes_with_its_key(tmp_path):
    (tmp_path / "ok.pem").write_text(PEM)
    (tmp_path / "plain.txt").write_text("not a certificate")
    ok, plain, missing = (str(tmp_path / name) for name in ("ok.pem", "plain.txt", "missing.pem"))

    assert config.server_tls(environ={}) is None and config.unit_tls(environ={}) is None
    assert not config.server_tls(environ={"LLMCHATLINKER_TLS_CERT": ok, "LLMCHATLINKER_TLS_KEY": ok}).mutual
    assert config.unit_tls(environ={"LLMCHATLINKER_UNIT_TLS_CA": ok}) == config.ClientTls(PEM.encode())
    with pytest.raises(SettingError, match='^environment variable "LLMCHATLINKER_TLS_KEY" not set: a certificate and '
                                           "its key go together"):
        config.server_tls(environ={"LLMCHATLINKER_TLS_CERT": ok})
    with pytest.raises(SettingError, match='"LLMCHATLINKER_UNIT_TLS_CERT" not set'):
        config.unit_tls(environ={"LLMCHATLINKER_UNIT_TLS_CA": ok, "LLMCHATLINKER_UNIT_TLS_KEY": ok})
    with pytest.raises(SettingError, match='"LLMCHATLINKER_TLS_CLIENT_CA" is set but .*"LLMCHATLINKER_TLS_CERT" is not'):
        config.server_tls(environ={"LLMCHATLINKER_TLS_CLIENT_CA": ok})
    with pytest.raises(SettingError, match='"LLMCHATLINKER_UNIT_TLS_CERT" is set but .*"LLMCHATLINKER_UNIT_TLS_CA" is not'):
        config.unit_tls(environ={"LLMCHATLINKER_UNIT_TLS_CERT": ok, "LLMCHATLINKER_UNIT_TLS_KEY": ok})
    with pytest.raises(SettingError, match=f'"LLMCHATLINKER_TLS_CERT": cannot read {missing}: No such file'):
        config.server_tls(environ={"LLMCHATLINKER_TLS_CERT": missing, "LLMCHATLINKER_TLS_KEY": ok})
    with pytest.raises(SettingError, match=f'"LLMCHATLINKER_UNIT_TLS_CA": {plain} is not a PEM file$'):
        config.unit_tls(environ={"LLMCHATLINKER_UNIT_TLS_CA": plain})
