"""The client's distribution name is ours on the public index, and every install hint names it."""

import pathlib
import tomllib
from importlib import metadata

from llmchatlinker.client import settings

CLIENT = pathlib.Path(__file__).resolve().parents[1]


def test_the_distribution_is_llmchatlinker_client_not_the_other_projects_llmchatlinker():
    project = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "llmchatlinker-client"
    assert "amqp" in project["optional-dependencies"]
    assert metadata.distribution("llmchatlinker-client").metadata["Name"] == "llmchatlinker-client"


def test_the_amqp_install_hint_names_our_distribution():
    assert "llmchatlinker-client[amqp]" in settings.AMQP_INSTALL_HINT
    assert "install llmchatlinker " not in settings.AMQP_INSTALL_HINT + " "
