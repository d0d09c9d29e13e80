"""A first chat in a few lines of Python.

Start the suite and the stand-in LLM (`make run` and `python -m testkit.llm_server --port 8089`, or
`llmchatlinker up --with-test-llm`), then run `python examples/first_chat.py`. Point it at a real
OpenAI-compatible server with LLM_ENDPOINT, LLM_MODEL and LLM_API_KEY.
"""

import os
import uuid

from llmchatlinker.client import LLMChatLinkerClient

endpoint = os.environ.get("LLM_ENDPOINT", "http://127.0.0.1:8089/v1/chat/completions")
model = os.environ.get("LLM_MODEL", "stand-in")
suffix = uuid.uuid4().hex[:6]  # names are unique: a run of its own each time

client = LLMChatLinkerClient()  # gRPC to 127.0.0.1:50051, or $LLMCHATLINKER_ORCHESTRATOR_ADDR
user = client.create_user(username=f"ada_{suffix}", display_name="Ada")["data"]["user"]
provider = client.add_llm_provider(name=f"provider_{suffix}", api_endpoint=endpoint,
                                   api_key=os.environ.get("LLM_API_KEY"))["data"]["provider"]
llm = client.add_llm(provider_id=provider["provider_id"], llm_name=model)["data"]["llm"]
chat = client.create_chat(title="First chat", user_ids=[user["user_id"]])["data"]["chat"]

for item in client.stream_llm_response(user_id=user["user_id"], chat_id=chat["chat_id"],
                                       provider_id=provider["provider_id"], llm_id=llm["llm_id"],
                                       user_input="What is the longest river in the world?"):
    if isinstance(item, str):
        print(item, end="", flush=True)  # a token as it arrives
    else:
        reply = item  # the final reply dict: {"status", "message", "data"}
print()
print(reply["status"], reply["data"]["llm_response"]["message_id"])
client.close()
