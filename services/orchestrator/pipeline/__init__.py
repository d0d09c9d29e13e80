"""The pipeline room: the instruction cycle (fetch, decode, execute, store), per-chat ordering,
progress routing, the result ledger's use, and the redelivery policy (back-off, delivery count,
dead letters)."""
