"""Runs the orchestrator: `python -m services.orchestrator`."""

from services.orchestrator.server import main

main()
