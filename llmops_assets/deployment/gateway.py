"""The gateway: one stable OpenAI-compatible endpoint in front of every live release.

It routes each chat request to the champion's model server (the release registry says which one
that is, so a new release takes over without the endpoint moving), or to a canary for its sticky
share of users, and copies each request to a shadow whose answer is logged, never returned. It adds the release's system
prompt when the client sent none, stamps the answer with a request id and the release version,
logs it durably (`core.request_log`) and exports Prometheus metrics labelled by release and role.
Upstream it always streams, so time to first token is measured for every request.

The deployment stage runs it detached (`llmops gateway`, see `ensure`) and keeps it across
releases: it reads the registry, so it never needs a restart to serve a new champion. It restarts
a release's llama.cpp server that died (`_ServerKeeper`).
"""


import hashlib
import json
import logging
import time
import uuid
from collections import defaultdict, deque
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from llmops_assets.deployment.config import DeploymentSettings

PIN_HEADER = "x-llmops-release"  # a release number: the request goes to that live release (probes, comparisons)
PROBE_HEADER = "x-llmops-probe"  # marks a labelled probe of the canary analysis, logged with its id
logger = logging.getLogger(__name__)
STATE_FILE = "gateway.json"  # pid, start time, port, endpoint: under $LLMOPS_HOME/gateway
GATEWAY_MARKER = "gateway"  # the `llmops` subcommand, and how its process is told from others


def create_app(home: Path, artifacts_url: str, deployment: DeploymentSettings, system_prompt: str, tools_file: Path):
    """The FastAPI app over the releases in the registry at `artifacts_url`. `system_prompt` is
    added to requests without one ('' to add none)."""
    import asyncio

    import anyio
    import httpx
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

    from llmops_assets.core.chat import parse_tool_call
    from llmops_assets.core.releases import ReleaseRegistry
    from llmops_assets.core.request_log import RequestLog, default_url, feedback_problem
    from llmops_assets.core.storage import ArtifactStore
    from llmops_assets.core.tools import ToolSchema
    from llmops_assets.deployment import review

    registry = ReleaseRegistry(ArtifactStore(artifacts_url, Path(home) / "cache"))
    schema = ToolSchema.from_file(tools_file)
    settings = deployment.gateway
    log = RequestLog(settings.request_log or default_url(home))
    api_key = deployment.api_key()
    requests_per_minute, cost_per_1k_tokens = settings.requests_per_minute, settings.cost_per_1k_tokens
    metrics = CollectorRegistry()
    labels = ("release", "role")
    requests_total = Counter("llmops_gateway_requests", "Chat requests answered", (*labels, "status"),
                             registry=metrics)
    latency = Histogram("llmops_gateway_latency_seconds", "Request latency", labels, registry=metrics,
                        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
    first_token = Histogram("llmops_gateway_first_token_seconds", "Time to the first token", labels,
                            registry=metrics, buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5))
    tokens = Counter("llmops_gateway_tokens", "Tokens in and out", (*labels, "kind"), registry=metrics)
    tool_calls = Counter("llmops_gateway_tool_calls", "Answers holding a tool call, by schema validity",
                         (*labels, "valid"), registry=metrics)
    client_tokens = Counter("llmops_gateway_client_tokens", "Tokens per API key (hashed)", ("client",),
                            registry=metrics)
    client_cost = Counter("llmops_gateway_client_cost", "Cost per API key at cost_per_1k_tokens", ("client",),
                          registry=metrics)
    feedback_total = Counter("llmops_gateway_feedback", "Feedback items received, by kind", (*labels, "kind"),
                             registry=metrics)
    recent: dict[str, deque] = defaultdict(deque)
    shadows: set = set()  # shadow copies in flight (a task needs a reference until it ends)
    routes = _Routes(registry)

    def shadow_done(task) -> None:
        shadows.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("a shadow copy failed", exc_info=task.exception())
    keeper = _ServerKeeper(registry, deployment, Path(home))

    async def watch() -> None:
        """Restart a live release's model server that died, within a second or so."""
        while True:
            await asyncio.sleep(1)
            for release in routes.live():
                if keeper.dead(release):
                    await anyio.to_thread.run_sync(keeper.restart, release)
                    routes.read_at = 0.0

    @asynccontextmanager
    async def lifespan(app):
        async with httpx.AsyncClient(timeout=settings.upstream_timeout_s) as client:
            app.state.client = client
            watcher = asyncio.create_task(watch())
            yield
            watcher.cancel()

    app = FastAPI(title="llmops-assets gateway", lifespan=lifespan)

    def error(status: int, message: str, kind: str) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)

    def client_of(request: Request) -> tuple[str, str | None]:
        """(hashed key or 'anonymous', the presented key): the log never holds a key."""
        header = request.headers.get("authorization", "")
        key = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        return (hashlib.sha256(key.encode()).hexdigest()[:16] if key else "anonymous"), key

    def unauthorized(key: str) -> JSONResponse | None:
        if api_key and key != api_key:
            return error(401, "missing or wrong API key (Authorization: Bearer ...)", "authentication_error")
        return None

    async def authorized_body(request: Request) -> tuple[JSONResponse | None, str, Any]:
        """(the 401 or 400 that refuses the request, or None; the client; its JSON body)."""
        client_id, key = client_of(request)
        if refused := unauthorized(key):
            return refused, client_id, None
        try:
            return None, client_id, await request.json()
        except json.JSONDecodeError as exc:
            return error(400, f"the body is not JSON: {exc}", "invalid_request_error"), client_id, None

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": r.model_name, "object": "model", "owned_by": "llmops-assets",
                                            "release": r.version, "role": r.role} for r in routes.live()]}

    @app.get("/metrics")
    async def prometheus():
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    @app.get("/health")
    async def health():
        champion = routes.champion()
        return JSONResponse({"status": "ok" if champion else "no release", "release": champion.version if champion
                             else None}, status_code=200 if champion else 503)

    @app.post("/v1/feedback")
    async def feedback(request: Request):
        """A rating, a correction, a comment or an implicit signal on an answer, by its request id:
        stored beside the request log; the feedback loop turns it into preference pairs."""
        refused, client_id, body = await authorized_body(request)
        if refused:
            return refused
        problem = feedback_problem(body)
        if problem:
            return error(400, problem, "invalid_request_error")
        answered = await anyio.to_thread.run_sync(log.get, body["request_id"])
        if answered is None or answered["shadow_of"] or answered["probe_id"]:
            return error(404, f"no answer with request id {body['request_id']!r} in the request log",
                         "not_found_error")
        feedback_id = await anyio.to_thread.run_sync(log.add_feedback, {
            "request_id": body["request_id"], "received_at": time.time(), "client": client_id,
            **{k: body.get(k) for k in ("rating", "correction", "comment", "signal")}})
        feedback_total.labels(release=answered["release_version"], role=answered["role"],
                              kind="correction" if body.get("correction") is not None else
                              ("rating" if body.get("rating") is not None else "signal")).inc()
        return JSONResponse({"feedback_id": feedback_id, "request_id": body["request_id"]}, status_code=201)

    @app.get("/review")
    async def review_page():
        """The review queue for people: approve, correct or reject answers (Chromium-tested)."""
        return HTMLResponse(review.PAGE)

    @app.get("/v1/review/queue")
    async def review_queue(request: Request, limit: int = 100):
        _, key = client_of(request)
        if refused := unauthorized(key):
            return refused
        entries = await anyio.to_thread.run_sync(lambda: review.queue_entries(log, registry.releases(), limit))
        return {"object": "list", "data": entries}

    @app.post("/v1/review")
    async def review_decision(request: Request):
        """A reviewer's decision on a queued answer: approve, reject, or correct (with the correction)."""
        refused, client_id, body = await authorized_body(request)
        if refused:
            return refused
        try:
            feedback_id, answered = await anyio.to_thread.run_sync(review.store_review, log, body, schema,
                                                                   f"review:{client_id}")
        except LookupError as exc:
            return error(404, str(exc.args[0]), "not_found_error")
        except ValueError as exc:
            return error(400, str(exc), "invalid_request_error")
        feedback_total.labels(release=answered["release_version"], role=answered["role"], kind="review").inc()
        return JSONResponse({"feedback_id": feedback_id, "request_id": body["request_id"]}, status_code=201)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        client_id, key = client_of(request)
        if refused := unauthorized(key):
            return refused
        window = recent[client_id]
        started = time.time()
        while window and window[0] < started - 60:
            window.popleft()
        if len(window) >= requests_per_minute:
            return error(429, f"rate limit: {requests_per_minute} requests per minute per API key", "rate_limit")
        window.append(started)
        try:
            body = await request.json()
        except json.JSONDecodeError as exc:
            return error(400, f"the body is not JSON: {exc}", "invalid_request_error")
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            return error(400, "messages must be a non-empty list of {role, content} objects", "invalid_request_error")
        request_id = uuid.uuid4().hex
        session = body.get("user") or request.headers.get("x-session-id")
        pinned = request.headers.get(PIN_HEADER)
        if pinned is not None:
            release = next((r for r in routes.live() if str(r.release_number) == pinned), None)
            if release is None:
                return error(404, f"{PIN_HEADER}: no live release {pinned}", "invalid_request_error")
        else:
            release = routes.pick(session or (client_id if key else request_id))
        if release is None:
            return error(503, "no release is served: deploy one (llmops run)", "service_unavailable")
        if release.role != "champion" and keeper.dead(release):  # the watcher restarts it; meanwhile the champion
            release = routes.champion() or release
        if system_prompt and not any(m.get("role") == "system" for m in messages):
            messages = [{"role": "system", "content": system_prompt}, *messages]
        upstream = {**body, "messages": messages, "stream": True, "stream_options": {"include_usage": True}}

        async def answering(release):
            """`release`, its server restarted if it died; if the registry retired it meanwhile
            (the routes are up to half a second old), the release that takes its requests now."""
            if not keeper.dead(release):
                return release
            routes.read_at = 0.0
            restarted = await anyio.to_thread.run_sync(keeper.restart, release)
            return restarted or routes.champion()

        release = await answering(release)
        if release is None:
            return error(503, "no release is served: deploy one (llmops run)", "service_unavailable")
        headers = {"x-request-id": request_id, "x-release-version": release.version}
        about = {"request_id": request_id, "release": {"version": release.version,
                                                       "release_number": release.release_number, "role": release.role}}
        entry = {"request_id": request_id, "received_at": started, "client": client_id, "session": session,
                 "shadow_of": None, "probe_id": request.headers.get(PROBE_HEADER)}

        async def account(release, reply: _Reply, entry: dict[str, Any]) -> None:
            """Metrics and the request log entry of one finished request (a shadow's copy included)."""
            status = 502 if reply.failure else 200
            usage, answer = reply.usage(), "".join(reply.parts)
            call = parse_tool_call(answer) if answer else None
            valid = None if call is None else not schema.problems(call)
            label = {"release": release.version, "role": release.role}
            requests_total.labels(**label, status=str(status)).inc()
            elapsed_ms = (time.time() - entry["received_at"]) * 1000
            latency.labels(**label).observe(elapsed_ms / 1000)
            if reply.first_ms is not None:
                first_token.labels(**label).observe(reply.first_ms / 1000)
            used = (usage.get("prompt_tokens") or 0) + (usage.get("completion_tokens") or 0)
            tokens.labels(**label, kind="prompt").inc(usage.get("prompt_tokens") or 0)
            tokens.labels(**label, kind="completion").inc(usage.get("completion_tokens") or 0)
            if entry["shadow_of"] is None:  # a shadow's copy costs the client nothing
                client_tokens.labels(client=client_id).inc(used)
                client_cost.labels(client=client_id).inc(used / 1000 * cost_per_1k_tokens)
            if valid is not None:
                tool_calls.labels(**label, valid=str(valid).lower()).inc()
            await anyio.to_thread.run_sync(log.record, {
                **entry, "release_number": release.release_number, "release_version": release.version,
                "role": release.role, "model": release.model_name, "messages": messages, "answer": answer,
                "status": status, "error": reply.failure, "latency_ms": elapsed_ms, "first_token_ms": reply.first_ms,
                "prompt_tokens": usage.get("prompt_tokens"), "completion_tokens": usage.get("completion_tokens"),
                "tool_call_valid": valid})

        async def shadow_copy() -> None:
            """The shadow answers the same request; its answer is logged, never returned."""
            shadow = routes.shadow()
            if shadow is None or pinned is not None or keeper.dead(shadow):
                return
            reply = _Reply()
            async for _ in _chunks(request.app.state.client, shadow.endpoint, {**upstream, "model": shadow.model},
                                   reply):
                pass
            await account(shadow, reply, {**entry, "request_id": uuid.uuid4().hex, "received_at": time.time(),
                                          "shadow_of": request_id})

        def after_reply() -> None:
            shadows.add(task := asyncio.create_task(shadow_copy()))
            task.add_done_callback(shadow_done)

        reply = _Reply()
        chunks = _chunks(request.app.state.client, release.endpoint, {**upstream, "model": release.model}, reply)
        if body.get("stream"):  # the client streams too: each chunk is passed on as it comes
            async def events():
                try:
                    async for chunk in chunks:
                        yield f"data: {json.dumps(chunk | about)}\n\n"
                    if reply.failure:
                        yield f"data: {json.dumps({'error': {'message': reply.failure, 'type': 'upstream_error'}})}\n\n"
                    yield "data: [DONE]\n\n"
                finally:
                    await account(release, reply, entry)
                    after_reply()

            return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
        async for _ in chunks:
            pass
        if reply.failure and not reply.parts:  # no token came: its server died, or was retired, as the request came in
            routes.read_at = 0.0
            retired = all(r.release_number != release.release_number for r in routes.live())
            retry = routes.champion() if retired and pinned is None else await answering(release)
            if retry is not None and (retry.release_number, retry.pid) != (release.release_number, release.pid):
                release, reply = retry, _Reply()
                async for _ in _chunks(request.app.state.client, release.endpoint,
                                       {**upstream, "model": release.model}, reply):
                    pass
        await account(release, reply, entry)
        after_reply()
        if reply.failure:
            return JSONResponse({"error": {"message": reply.failure, "type": "upstream_error"}, **about},
                                status_code=502, headers=headers)
        usage = reply.usage()
        return JSONResponse({
            "id": f"chatcmpl-{request_id}", "object": "chat.completion", "created": int(started),
            "model": release.model_name, **about,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(reply.parts)},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": usage.get("prompt_tokens") or 0,
                      "completion_tokens": usage.get("completion_tokens") or 0,
                      "total_tokens": (usage.get("prompt_tokens") or 0) + (usage.get("completion_tokens") or 0)},
        }, headers=headers)

    return app


class _Reply:
    """What one upstream streamed answer has given so far. Usage is the server's when it reports
    it (Ollama does); llama.cpp's server streams one token per chunk and reports none, so
    completion tokens are the chunks then and prompt tokens unknown."""

    def __init__(self):
        self.parts: list[str] = []
        self.reported: dict[str, int] = {}
        self.first_ms: float | None = None
        self.failure: str | None = None

    def usage(self) -> dict[str, int]:
        return self.reported or {"completion_tokens": len(self.parts)}


async def _chunks(client, endpoint: str, body: dict[str, Any], reply: _Reply):
    """The upstream stream's chunks, parsed, while `reply` collects the answer, usage and time to
    first token; a failure ends the stream and is kept in `reply.failure`."""
    import httpx

    started = time.perf_counter()
    try:
        async with client.stream("POST", f"{endpoint}/chat/completions", json=body) as response:
            if response.status_code != 200:
                reply.failure = f"the model server answered {response.status_code}: {(await response.aread())[:300]!r}"
                return
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                reply.reported = chunk.get("usage") or reply.reported
                for choice in chunk.get("choices") or []:
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        if reply.first_ms is None:
                            reply.first_ms = (time.perf_counter() - started) * 1000
                        reply.parts.append(text)
                yield chunk
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        reply.failure = f"the model server at {endpoint} failed: {exc!r}"


class _ServerKeeper:
    """Restarts the llama.cpp server of a live release when its process is gone: the same GGUF,
    alias and port (clients and the registry keep the endpoint), recorded as a `restarted` event."""

    def __init__(self, registry, deployment: DeploymentSettings, home: Path):
        import threading

        self.registry, self.deployment, self.home = registry, deployment, home
        self.lock = threading.Lock()

    def dead(self, release) -> bool:
        from llmops_assets.deployment import servers

        return release.server == "llamacpp" and not servers.is_our_server(release.pid, release.pid_started_at)

    def restart(self, release):
        """The release as served after the restart (another thread may have restarted it first);
        None when the registry no longer serves it (retired or stopped: not restarted)."""
        from urllib.parse import urlparse

        from llmops_assets.deployment import servers

        with self.lock:
            current = self.registry.releases()[release.release_number]
            if not current.live:
                return None
            if not self.dead(current):
                return current
            address = urlparse(current.endpoint)
            s = self.deployment
            handle = servers.start_llamacpp(Path(current.model_path), current.model, address.hostname, address.port,
                                            s.n_threads, s.n_ctx, self.home / "server", api_key=s.api_key())
            servers.wait_healthy(handle.endpoint, handle.pid, s.quality_gate.health_timeout_s, s.api_key())
            self.registry.restarted(current.release_number, handle.pid, handle.started_at, str(handle.log_file),
                                    f"the server (pid {current.pid}) was gone; restarted by the gateway")
            self.registry.write_views(self.home)
            return self.registry.releases()[release.release_number]


class _Routes:
    """The live releases, re-read from the registry at most every half second, and which one a
    request goes to."""

    def __init__(self, registry):
        self.registry = registry
        self.read_at = 0.0
        self.releases: list = []

    def live(self) -> list:
        if time.monotonic() - self.read_at > 0.5:
            self.releases = self.registry.live()
            self.read_at = time.monotonic()
        return self.releases

    def champion(self):
        return next((r for r in self.live() if r.role == "champion"), None)

    def shadow(self):
        return next((r for r in self.live() if r.role == "shadow"), None)

    def pick(self, key: str):
        """The canary for its share of keys, else the champion. A key (user, session, API key)
        keeps its release while the canary's share stays or grows."""
        canary = next((r for r in self.live() if r.role == "canary"), None)
        if canary is not None and traffic_share(key, canary.release_number) < canary.traffic_weight:
            return canary
        return self.champion()


def traffic_share(key: str, release_number: int) -> float:
    """Where a key falls in [0, 1) for a release: uniform over keys, fixed for each."""
    digest = hashlib.sha256(f"{release_number}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def state_path(home: Path) -> Path:
    return Path(home) / "gateway" / STATE_FILE


def running(home: Path) -> dict[str, Any] | None:
    """The gateway's recorded state when that process is still our gateway, else None."""
    from llmops_assets.core.storage import read_json
    from llmops_assets.deployment import servers

    path = state_path(home)
    state = read_json(path) if path.exists() else None
    if state and servers.is_our_server(state["pid"], state["started_at"], marker=GATEWAY_MARKER):
        return state
    return None


def ensure(home: Path, config_path: Path, artifacts_url: str, host: str, port: int, timeout_s: float = 30) -> dict[str, Any]:
    """The running gateway, started when none runs. Its port is `port`, else the one it had before
    (agents keep their endpoint across releases and gateway restarts), else a free one."""
    import os
    import sys

    from llmops_assets.core.storage import read_json, write_json
    from llmops_assets.deployment import servers

    state = running(home)
    if state:
        return state
    path = state_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = read_json(path) if path.exists() else {}
    port = port or previous.get("port") or servers.free_port(host)
    if not servers.port_is_free(host, port):
        raise RuntimeError(f"the gateway's port {host}:{port} is taken by another process: free it or set "
                           "stages.deployment.gateway.port")
    log_file = path.parent / "gateway.log"
    command = [sys.executable, "-m", "llmops_assets.cli", "--config", str(config_path), GATEWAY_MARKER,
               "--port", str(port)]
    environment = os.environ | {"LLMOPS_HOME": str(home), "LLMOPS_ARTIFACTS": artifacts_url}
    pid, started_at = servers.start_detached(command, environment, log_file)
    endpoint = f"http://{host}:{port}/v1"
    state = {"pid": pid, "started_at": started_at, "port": port, "endpoint": endpoint, "log_file": str(log_file)}
    _wait_listening(endpoint, pid, timeout_s, log_file)
    write_json(path, state)
    return state


def stop(home: Path) -> bool:
    from llmops_assets.deployment import servers

    state = running(home)
    return bool(state) and servers.stop(state["pid"], state["started_at"], marker=GATEWAY_MARKER)


def _wait_listening(endpoint: str, pid: int, timeout_s: float, log_file: Path) -> None:
    import urllib.error
    import urllib.request

    from llmops_assets.deployment import servers

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not servers.is_alive(pid):
            raise RuntimeError(f"the gateway exited at start; its log {log_file} says: "
                               f"{log_file.read_text(errors='replace')[-500:]}")
        try:
            urllib.request.urlopen(endpoint.removesuffix("/v1") + "/health", timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers (503 until a release is served)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise TimeoutError(f"the gateway did not answer on {endpoint} within {timeout_s:.0f}s (log: {log_file})")
