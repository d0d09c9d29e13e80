"""A stand-in LLM provider: an aiohttp server speaking OpenAI and Ollama chat over real HTTP."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import signal
from collections import deque
from dataclasses import asdict, dataclass

from aiohttp import web

from testkit import faults
from testkit.scenario import OptionError, Options, prompt_tokens, reply_tokens, resolve
from testkit.wire import OllamaWire, OpenAiWire, Wire

REQUEST_LOG_SIZE = 1000
# Benchmarks open 256 connections at once; the default backlog of 128 would drop SYNs.
LISTEN_BACKLOG = 1024
# How long stop() lets aiohttp finish open responses; our own handlers are cancelled
# first, since a stall or drip never ends by itself.
SHUTDOWN_SECONDS = 1.0
# The pace of `python -m testkit.llm_server` (what `llmchatlinker up --with-test-llm` runs): a demo
# should look streamed, about 6 tokens a second. LlmServer itself, which tests and benchmarks
# start, keeps answering at once (interval_ms=0) unless told otherwise.
DEMO_INTERVAL_MS = 150.0


@dataclass
class Stats:
    started: int = 0
    completed: int = 0
    client_disconnected: int = 0
    server_closed: int = 0
    in_flight: int = 0


class LlmServer:
    """The stand-in provider on one event loop; `**defaults` are scenario.Options fields."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **defaults: object) -> None:
        self.host = host
        self.defaults = Options(**defaults)  # type: ignore[arg-type]
        self.requests: deque[dict] = deque(maxlen=REQUEST_LOG_SIZE)
        self.stats = Stats()
        self._port = port
        self._runner: web.AppRunner | None = None
        self._handlers: set[asyncio.Task] = set()
        self._stopping = False
        # Requests seen per model name, for fail_first.
        self._seen: dict[str, int] = {}

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self._port}"

    @property
    def openai_url(self) -> str:
        return self.base_url + "/v1/chat/completions"

    @property
    def ollama_url(self) -> str:
        return self.base_url + "/api/chat"

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_post("/v1/chat/completions", self._openai)
        app.router.add_post("/chat/completions", self._openai)
        app.router.add_post("/api/chat", self._ollama)
        app.router.add_get("/_testkit/requests", self._list_requests)
        app.router.add_delete("/_testkit/requests", self._clear_requests)
        app.router.add_get("/_testkit/stats", self._stats)
        # handler_cancellation turns a vanished client into CancelledError in the handler,
        # which is how a stall ends and how client_disconnected is counted.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                               shutdown_timeout=SHUTDOWN_SECONDS)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._port, backlog=LISTEN_BACKLOG)
        await site.start()
        self._runner = runner
        self._stopping = False
        self._port = runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is None:
            return
        self._stopping = True
        for task in list(self._handlers):
            task.cancel()
        await self._runner.cleanup()
        self._runner = None

    async def __aenter__(self) -> LlmServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _openai(self, request: web.Request) -> web.StreamResponse:
        return await self._counted(request, OpenAiWire, stream_default=False)

    async def _ollama(self, request: web.Request) -> web.StreamResponse:
        return await self._counted(request, OllamaWire, stream_default=True)

    async def _counted(self, request: web.Request, wire_type: type[Wire], stream_default: bool) -> web.StreamResponse:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.stats.started += 1
        self.stats.in_flight += 1
        try:
            response = await self._answer(request, wire_type, stream_default)
            self.stats.completed += 1
            return response
        except faults.HungUp:
            self.stats.server_closed += 1
            raise
        except (asyncio.CancelledError, ConnectionError):
            if not self._stopping:
                self.stats.client_disconnected += 1
            # Cancellation is the quiet way out; a ConnectionError would be logged as a 500.
            raise asyncio.CancelledError() from None
        finally:
            self.stats.in_flight -= 1
            self._handlers.discard(task)

    async def _answer(self, request: web.Request, wire_type: type[Wire], stream_default: bool) -> web.StreamResponse:
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return faults.error_response(wire_type("", {}), 400, "testkit: body must be a JSON object")
        model = body.get("model") if isinstance(body.get("model"), str) else ""
        messages = body["messages"] if isinstance(body.get("messages"), list) else []
        stream = bool(body.get("stream", stream_default))
        authorization = request.headers.get("Authorization")
        self.requests.append({"path": request.path, "query": dict(request.query), "model": model,
                              "messages": messages, "stream": stream, "authorization": authorization})
        wire = wire_type(model, body)
        try:
            options = resolve(self.defaults, request.query, model)
        except OptionError as exc:
            return faults.error_response(wire, 400, f"testkit: {exc}")
        wire.report_usage = options.usage == "on"
        if options.fail is not None and options.fail_first is not None:
            self._seen[model] = seen = self._seen.get(model, 0) + 1
            if seen > options.fail_first:
                options = dataclasses.replace(options, fail=None)

        if options.require_key is not None and authorization != f"Bearer {options.require_key}":
            return faults.error_response(wire, 401)
        if options.fail == "refuse":
            faults.hang_up(request, reset=True)
        await _sleep_ms(options.latency_ms)
        if options.fail == "stall":
            await faults.stall(request)
        if options.fail == "drip":
            await faults.drip(request, wire, stream, options.drip_ms)
        if options.fail == "flood":
            await faults.flood(request, wire, stream)
        if options.fail in ("500", "429", "401"):
            response = faults.error_response(wire, int(options.fail))
            if options.retry_after is not None:
                response.headers["Retry-After"] = f"{options.retry_after:g}"
            return response

        tokens = reply_tokens(options, messages)
        if options.fail == "garbage":
            return await faults.garbage(request, wire, stream, len(tokens))
        prompt = prompt_tokens(messages)
        if stream:
            return await _stream(request, wire, tokens, prompt, options)
        await _sleep_ms(len(tokens) * options.interval_ms)
        payload = wire.body("".join(tokens), prompt, len(tokens))
        if options.fail == "cut":
            await faults.cut_body(request, payload)
        return web.Response(body=payload, content_type="application/json")

    async def _list_requests(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.requests))

    async def _clear_requests(self, request: web.Request) -> web.Response:
        cleared = len(self.requests)
        self.requests.clear()
        return web.json_response({"cleared": cleared})

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(asdict(self.stats))


async def _sleep_ms(ms: float) -> None:
    if ms > 0:
        await asyncio.sleep(ms / 1000)


async def _stream(request: web.Request, wire: Wire, tokens: list[str], prompt: int,
                  options: Options) -> web.StreamResponse:
    """Stream the reply token by token; with fail=cut, stop half-way and close."""
    response = web.StreamResponse(headers={"Content-Type": wire.stream_content_type, "Cache-Control": "no-cache"})
    await response.prepare(request)
    cut = options.fail == "cut"
    sent = tokens[: len(tokens) // 2] if cut else tokens
    closing = b"" if cut else wire.closing(prompt, len(tokens))
    if options.interval_ms <= 0:
        # One write for the whole stream keeps 200 concurrent streams cheap.
        await response.write(wire.opening() + b"".join(map(wire.token, sent)) + closing)
    else:
        # Pace against a schedule, not sleep after sleep, so load does not stretch the stream.
        loop = asyncio.get_running_loop()
        due = loop.time()
        opening = wire.opening()
        for index, token in enumerate(sent):
            if index:
                due += options.interval_ms / 1000
                await asyncio.sleep(max(0.0, due - loop.time()))
            await response.write(opening + wire.token(token))
            opening = b""
        await response.write(opening + closing)
    if cut:
        faults.hang_up(request, reset=False)
    await response.write_eof()
    return response


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m testkit.llm_server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, help="wait before the first byte")
    parser.add_argument("--tokens", type=int, help="reply with N tokens t0 t1 ... instead of an echo")
    parser.add_argument("--interval-ms", type=float, default=DEMO_INTERVAL_MS,
                        help="wait between streamed tokens (default %(default)s, a visible pace; 0: all at once)")
    parser.add_argument("--fail", help="refuse, stall, drip, 500, 429, 401, garbage, cut or flood")
    parser.add_argument("--drip-ms", type=float, help="pause between bytes with --fail drip")
    parser.add_argument("--require-key", help="answer 401 unless 'Authorization: Bearer KEY'")
    parser.add_argument("--fail-first", type=int, help="with --fail: only the first N requests of each model fail")
    parser.add_argument("--retry-after", type=float, help="with --fail 429 or 500: the Retry-After header, seconds")
    parser.add_argument("--usage", choices=("on", "off"), help="off: replies report no token counts")
    return parser.parse_args(argv)


async def _serve_until_signalled(args: argparse.Namespace) -> None:
    names = ("latency_ms", "tokens", "interval_ms", "fail", "drip_ms", "require_key", "fail_first", "retry_after", "usage")
    defaults = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    async with LlmServer(args.host, args.port, **defaults) as server:
        print(f"testkit LLM server on {server.base_url}", f"  OpenAI: {server.openai_url}",
              f"  Ollama: {server.ollama_url}", sep="\n", flush=True)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stopping.set)
        await stopping.wait()


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    try:
        asyncio.run(_serve_until_signalled(args))
    except OptionError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
