"""Runs the db unit: python -m services.db_unit."""

from services.db_unit.server import main

main()
