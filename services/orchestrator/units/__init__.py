"""The units room: one channel per unit and a gateway per unit. Deadlines, batching and caches are
set here, once; it imports nothing else of the orchestrator, only the generated stubs."""
