"""The queue room: messages and transports (RabbitMQ, in-process), message bodies, replies and the Switchboard.

Nothing here knows instructions' meaning or the units; it imports nothing else of the orchestrator.
"""
