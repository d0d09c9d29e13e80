"""Benchmarks of the suite against the provider direct and the LiteLLM proxy: `python -m bench`."""
