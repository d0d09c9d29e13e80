"""Every deadline of the suite, in seconds, in one block: each inner one ends before the one around it.

Nested from the inside out, so that a slow step is ended by the part that knows what was slow and
that answer still reaches the caller, instead of every layer giving up at the same moment:

    provider reply (llm_unit)  <  GenerateReply call (orchestrator)
    GenerateReply + the unary calls around it  <=  one instruction (orchestrator)  <  client

services/common/tests/test_deadlines.py checks the nesting, the client's copy included.
"""

# One unary call from the orchestrator to a unit, the channel's retries included. Units answer
# from their own database in milliseconds; 10 s leaves room for the retry policy's back-off (4
# attempts, at most 2 s apart) and for a unit waiting on a database lock.
UNARY_CALL_SECONDS = 10.0

# How long llm_unit lets a provider take over one reply when the request sets no timeout_ms: the
# default of LLMCHATLINKER_LLM_UNIT_GENERATION_TIMEOUT_MS. Long answers of slow local models take
# minutes. Setting the variable lower shortens it; higher, GENERATE_REPLY_CALL_SECONDS still ends it.
PROVIDER_REPLY_SECONDS = 120.0

# The orchestrator's deadline on a GenerateReply call: the provider's time plus one unary call's
# worth for llm_unit's own part (reading the model, connecting, the trip back). llm_unit caps its
# budget at the time left on the call, so with this margin it is llm_unit that ends a slow
# provider, with an error naming it, before the orchestrator would cut the call blind.
GENERATE_REPLY_CALL_SECONDS = PROVIDER_REPLY_SECONDS + UNARY_CALL_SECONDS

# Unary calls an instruction makes one after another around its generation, at the most: the
# stored-result lookup, the model and the chat history before it; the messages, the record and the
# result after it.
UNARY_CALLS_AROUND_A_GENERATION = 6

# The longest the orchestrator's calls for one instruction add up to once it has taken it from the
# queue (each call has its own deadline; nothing cuts the sum short).
INSTRUCTION_SECONDS = GENERATE_REPLY_CALL_SECONDS + UNARY_CALLS_AROUND_A_GENERATION * UNARY_CALL_SECONDS

# How long the client waits for an instruction's result (LLMCHATLINKER_CLIENT_TIMEOUT): the
# orchestrator's longest plus time waiting in the queue behind other instructions, so a client
# hears the orchestrator's own DEADLINE_EXCEEDED rather than timing out first. The client package
# is released alone and cannot import this: llmchatlinker.client.settings.DEFAULT_TIMEOUT_SECONDS
# holds the same number, and a test checks that they agree.
CLIENT_INSTRUCTION_SECONDS = 300.0

# What in-flight work gets to finish after SIGTERM before it is cancelled. Far shorter than a
# generation, so that a stop is quick: with RabbitMQ an instruction cut short is not acknowledged
# and is delivered again (to another replica).
SHUTDOWN_GRACE_SECONDS = 10.0

# How long the launcher (`llmchatlinker up`) waits for a service to exit after SIGTERM before it
# kills it. The orchestrator drains twice, each for up to the grace (its instructions, then its
# RPCs); then come closing connections and exiting.
LAUNCHER_STOP_GRACE_SECONDS = 2 * SHUTDOWN_GRACE_SECONDS + 5.0

# One grpc.health.v1 Check (compose health checks, `python -m services.healthcheck`).
HEALTH_CHECK_SECONDS = 3.0

# How long `llmchatlinker up` waits for every service to report SERVING: each unit migrates its
# database first, which on a cold PostgreSQL takes seconds.
LAUNCHER_READY_SECONDS = 60.0
