"""Run the stand-in LLM provider: `python -m testkit --port 8089`."""

from testkit.llm_server import main

main()
