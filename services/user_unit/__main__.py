"""Runs the user unit: python -m services.user_unit."""

from services.user_unit.server import main

main()
