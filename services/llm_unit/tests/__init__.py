"""Tests of the LLM unit."""
