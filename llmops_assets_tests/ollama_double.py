"""An HTTP test double of the Ollama server, for the endpoints the `ollama` client uses.

Ollama itself cannot be installed on these machines (no registry we reach ships it), so the
Ollama target is tested against this double; a live test runs instead when OLLAMA_HOST answers.
The double is strict where Ollama is (blob digests must match their bytes, `create` only takes
blobs it has, unknown models are 404) and answers chats by running the uploaded GGUF in llama.cpp.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class OllamaDouble:
    def __init__(self) -> None:
        self.blobs: dict[str, Path] = {}
        self.models: dict[str, dict[str, Any]] = {}
        self.loaded: dict[str, Any] = {}
        self.requests: list[tuple[str, str]] = []
        self._dir = tempfile.TemporaryDirectory()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.host = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> OllamaDouble:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._dir.cleanup()

    def listing(self, name: str) -> dict[str, Any]:
        model = self.models[name]
        return _listing(name, model, self.blobs[model["blob"]].stat().st_size)

    def _llm(self, name: str):
        from llama_cpp import Llama

        model = self.models[name]
        if model["blob"] not in self.loaded:
            self.loaded[model["blob"]] = Llama(str(self.blobs[model["blob"]]), n_ctx=512, n_threads=1, verbose=False)
        return self.loaded[model["blob"]]

    def _handler(self):
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _send(self, status: int, payload: Any = None, lines: list[Any] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/x-ndjson" if lines else "application/json")
                self.end_headers()
                for item in lines if lines is not None else [payload or {}]:
                    self.wfile.write(json.dumps(item).encode() + b"\n")

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while (size := int(self.rfile.readline().strip(), 16)) > 0:
                        data += self.rfile.read(size)
                        self.rfile.readline()
                    self.rfile.readline()
                    return data
                return self.rfile.read(int(self.headers.get("Content-Length", 0)))

            def _model(self, name: str) -> dict[str, Any] | None:
                return double.models.get(name if ":" in name else f"{name}:latest")

            def do_GET(self) -> None:
                double.requests.append(("GET", self.path))
                if self.path == "/api/version":
                    return self._send(200, {"version": "0.0.0-test-double"})
                if self.path == "/api/tags":
                    return self._send(200, {"models": [double.listing(n) for n in double.models]})
                if self.path == "/api/ps":
                    loaded = [double.listing(n) | {"size_vram": 0, "expires_at": "2100-01-01T00:00:00Z"}
                              for n, m in double.models.items() if m["blob"] in double.loaded]
                    return self._send(200, {"models": loaded})
                self._send(404, {"error": f"no route {self.path}"})

            def do_HEAD(self) -> None:
                digest = self.path.rsplit("/", 1)[-1]
                self._send(200 if digest in double.blobs else 404)

            def do_POST(self) -> None:
                double.requests.append(("POST", self.path))
                body = self._body()
                if match := re.fullmatch(r"/api/blobs/(sha256:[0-9a-f]{64})", self.path):
                    if "sha256:" + hashlib.sha256(body).hexdigest() != match.group(1):
                        return self._send(400, {"error": "digest mismatch"})
                    path = Path(double._dir.name) / match.group(1).replace(":", "-")
                    path.write_bytes(body)
                    double.blobs[match.group(1)] = path
                    return self._send(201)
                request = json.loads(body or b"{}")
                if self.path == "/api/create":
                    missing = [d for d in request.get("files", {}).values() if d not in double.blobs]
                    if missing or not request.get("files"):
                        return self._send(400, {"error": f"unknown blobs {missing}"})
                    double.models[request["model"]] = {
                        "blob": next(iter(request["files"].values())), "template": request.get("template"),
                        "system": request.get("system"), "parameters": request.get("parameters", {}),
                    }
                    return self._send(200, {"status": "success"})
                if self.path == "/api/copy":
                    if request["source"] not in double.models:
                        return self._send(404, {"error": f"model '{request['source']}' not found"})
                    double.models[request["destination"]] = dict(double.models[request["source"]])
                    return self._send(200)
                model = self._model(request.get("model", ""))
                if model is None:
                    return self._send(404, {"error": f"model '{request.get('model')}' not found"})
                if self.path == "/api/show":
                    return self._send(200, {"template": model["template"], "system": model["system"],
                                            "parameters": json.dumps(model["parameters"]), "details": {"format": "gguf"},
                                            "model_info": {"general.architecture": "llama"},
                                            "capabilities": ["completion"]})
                if self.path in ("/api/chat", "/api/generate"):
                    return self._generate(request, model)
                self._send(404, {"error": f"no route {self.path}"})

            def do_DELETE(self) -> None:
                double.requests.append(("DELETE", self.path))
                name = json.loads(self._body() or b"{}").get("model", "")
                if double.models.pop(name, None) is None:
                    return self._send(404, {"error": f"model '{name}' not found"})
                self._send(200)

            def _generate(self, request: dict[str, Any], model: dict[str, Any]) -> None:
                llm = double._llm(request["model"] if ":" in request["model"] else f"{request['model']}:latest")
                options = request.get("options") or {}
                stop = model["parameters"].get("stop", [])
                if self.path == "/api/chat":
                    messages = [{"role": "system", "content": model["system"]}] if model["system"] else []
                    pieces = llm.create_chat_completion(messages + request["messages"], stream=True, stop=stop,
                                                        max_tokens=options.get("num_predict", 32), temperature=0)
                    texts = [p["choices"][0]["delta"].get("content") or "" for p in pieces]
                    frames = [{"message": {"role": "assistant", "content": t}, "done": False} for t in texts if t]
                else:
                    pieces = llm.create_completion(request["prompt"], stream=True, stop=stop,
                                                   max_tokens=options.get("num_predict", 32), temperature=0)
                    frames = [{"response": p["choices"][0]["text"], "done": False} for p in pieces]
                stamp = {"model": request["model"], "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ")}
                final = stamp | {"done": True, "done_reason": "stop", **({"message": {"role": "assistant", "content": ""}}
                                                                        if self.path == "/api/chat" else {"response": ""})}
                if request.get("stream", True):
                    return self._send(200, lines=[stamp | f for f in frames] + [final])
                joined = "".join(f.get("message", {}).get("content", f.get("response", "")) for f in frames)
                key = "message" if self.path == "/api/chat" else "response"
                self._send(200, final | {key: {"role": "assistant", "content": joined} if key == "message" else joined})

        return Handler


def _listing(name: str, model: dict[str, Any], size: int) -> dict[str, Any]:
    return {"name": name, "model": name, "digest": model["blob"].split(":", 1)[1], "size": size,
            "details": {"format": "gguf"}, "modified_at": "2026-01-01T00:00:00Z"}
