"""Streaming OpenAI chat completions over aiohttp: the provider direct, or LiteLLM in front of it."""

from __future__ import annotations

import json

import aiohttp

from bench.timeline import Timeline, now

# Below uvicorn's 5 s keep-alive (LiteLLM's server), so we never pick a pooled connection the
# server is closing; a request that still meets a closed connection is sent once more.
KEEPALIVE_S = 2.0
STALE_CONNECTION = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


class OpenAiStreamer:
    """One aiohttp session without a connection limit, as the floor's baseline client uses."""

    def __init__(self, url: str, api_key: str | None = None) -> None:
        self.url = url
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._session: aiohttp.ClientSession | None = None
        self.retries = 0

    async def __aenter__(self) -> OpenAiStreamer:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_S),
                                              timeout=aiohttp.ClientTimeout(total=300))
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._session is not None
        await self._session.close()

    async def stream(self, model: str, prompt: str) -> Timeline:
        """One streamed completion; the timeline's start is the first attempt's, retries included."""
        timeline = Timeline()
        body = {"model": model, "stream": True, "messages": [{"role": "user", "content": prompt}]}
        for attempt in range(2):
            try:
                return await self._attempt(body, timeline)
            except STALE_CONNECTION as exc:
                if attempt:
                    return timeline.finish(f"{type(exc).__name__}: {exc}")
                self.retries += 1
        raise AssertionError("unreachable")

    async def _attempt(self, body: dict, timeline: Timeline) -> Timeline:
        assert self._session is not None
        try:
            async with self._session.post(self.url, json=body, headers=self._headers) as response:
                if response.status != 200:
                    return timeline.finish(f"HTTP {response.status}: {(await response.text())[:200]}")
                async for line in response.content:
                    if not line.startswith(b"data: "):
                        continue
                    at = now()
                    payload = line[6:].strip()
                    if payload == b"[DONE]":
                        break
                    choices = json.loads(payload).get("choices") or []
                    if choices:
                        timeline.text_arrived((choices[0].get("delta") or {}).get("content") or "", at)
        except STALE_CONNECTION:
            if timeline.first is None:
                raise
            return timeline.finish("connection lost mid-stream")
        except (aiohttp.ClientError, ValueError, TimeoutError) as exc:
            return timeline.finish(f"{type(exc).__name__}: {exc}")
        return timeline.finish()
