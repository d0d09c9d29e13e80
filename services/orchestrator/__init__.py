"""The orchestrator: fetches instructions, decodes them, executes them on the units and stores the results."""
