"""The LLM unit: providers, their models, and generation by calling the providers over HTTP."""
