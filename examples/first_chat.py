"""A first chat in a few lines of Python.

Start the suite with the stand-in LLM (`make run ARGS=--with-test-llm`), then run
`.venv/bin/python examples/first_chat.py`. Point it at a real OpenAI-compatible server with
LLM_ENDPOINT, LLM_MODEL and LLM_API_KEY. Names are fresh on every run, so it runs again and again;
a failure prints the suite's message and exits non-zero.
"""

import os
import sys
import uuid

from llmchatlinker.client import LLMChatLinkerClient, LLMChatLinkerError

endpoint = os.environ.get("LLM_ENDPOINT", "http://127.0.0.1:8089/v1/chat/completions")
model = os.environ.get("LLM_MODEL", "stand-in")
suffix = uuid.uuid4().hex[:6]  # names are unique: a run of its own each time

streamed = False  # whether a token is on the current line
# gRPC to 127.0.0.1:50051, or $LLMCHATLINKER_ORCHESTRATOR_ADDR
with LLMChatLinkerClient() as client:
    try:
        # `.value` is what a reply carries (reply["data"]["user"], ...); on an error reply it raises.
        user = client.create_user(username=f"ada_{suffix}", display_name="Ada").value
        provider = client.add_llm_provider(name=f"provider_{suffix}", api_endpoint=endpoint,
                                           api_key=os.environ.get("LLM_API_KEY")).value
        llm = client.add_llm(provider_id=provider["provider_id"], llm_name=model).value
        chat = client.create_chat(title="First chat", user_ids=[user["user_id"]]).value

        for item in client.stream_llm_response(user_id=user["user_id"], chat_id=chat["chat_id"],
                                               provider_id=provider["provider_id"], llm_id=llm["llm_id"],
                                               user_input="What is the longest river in the world?"):
            if isinstance(item, str):
                print(item, end="", flush=True)  # a token as it arrives
                streamed = True
            else:
                reply = item.value  # the final reply's message; raises if the generation failed
        print()
        print("success", reply["message_id"])
    except LLMChatLinkerError as error:
        sys.exit(("\n" if streamed else "") + f"first_chat: {error}")
