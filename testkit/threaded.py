"""Run an LlmServer on its own event loop in a daemon thread, for synchronous tests."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

from testkit.llm_server import LlmServer


class ThreadedLlmServer:
    """An LlmServer running on its own event loop in a daemon thread, for synchronous code."""

    def __init__(self, server: LlmServer, loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        self.server = server
        self._loop = loop
        self._thread: threading.Thread | None = thread

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def openai_url(self) -> str:
        return self.server.openai_url

    @property
    def ollama_url(self) -> str:
        return self.server.ollama_url

    def stop(self) -> None:
        if self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._thread = None

    def __enter__(self) -> ThreadedLlmServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def run_in_thread(host: str = "127.0.0.1", port: int = 0, **defaults: object) -> ThreadedLlmServer:
    """Start an LlmServer in a daemon thread and return once it is listening."""
    server = LlmServer(host, port, **defaults)
    loop = asyncio.new_event_loop()
    started: concurrent.futures.Future[None] = concurrent.futures.Future()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.start())
        except BaseException as exc:
            started.set_exception(exc)
            loop.close()
            return
        started.set_result(None)
        try:
            loop.run_forever()
        finally:
            loop.close()

    thread = threading.Thread(target=serve, name="testkit-llm-server", daemon=True)
    thread.start()
    started.result(timeout=30)
    return ThreadedLlmServer(server, loop, thread)
