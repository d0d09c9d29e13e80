"""Runs the LLM unit: `python -m services.llm_unit`."""

from services.llm_unit.server import main

main()
