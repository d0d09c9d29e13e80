"""Runs the chat unit: `python -m services.chat_unit`."""

from services.chat_unit.server import main

main()
