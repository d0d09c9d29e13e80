"""The instructions room: the catalog (one row per instruction type), the Control Unit that runs
them, their handlers, and instruction recording. Handlers reach the units through gateways only."""
