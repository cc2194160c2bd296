"""Scripted users of the gateway for the feedback-loop tests: requests, corrections through
`POST /v1/feedback`, and background client traffic."""

import json
import threading
import urllib.error
import urllib.request
from contextlib import contextmanager

from llmops_assets.deployment.gateway import PIN_HEADER


def delete(task: int) -> dict:
    return {"name": "delete_task", "arguments": {"task_id": task}}


class ScriptedFeedback:
    def __init__(self, endpoint: str, max_tokens: int = 32):
        self.endpoint, self.max_tokens = endpoint.rstrip("/"), max_tokens

    def post(self, path: str, body: dict, key: str, headers: dict | None = None) -> dict:
        request = urllib.request.Request(f"{self.endpoint}/{path}", data=json.dumps(body).encode(), headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {key}", **(headers or {})})
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.load(response)

    def ask(self, text: str, key: str, release: int | None = None) -> dict:
        """One chat request as user `key` (pinned to a release number when given)."""
        return self.post("chat/completions", {"max_tokens": self.max_tokens, "messages": [
            {"role": "user", "content": text}]}, key, {PIN_HEADER: str(release)} if release else None)

    def correct(self, text: str, key: str, correction) -> str:
        """Ask, then send the right answer as a correction of whatever came back; the request id."""
        answer = self.ask(text, key)
        self.post("feedback", {"request_id": answer["request_id"], "rating": -1, "correction": correction}, key)
        return answer["request_id"]

    @contextmanager
    def clients(self, users: int = 50, every_s: float = 0.3):
        """Plain client requests from `users` users in the background while the block runs; a
        request that fails is kept in `failures`."""
        stop = threading.Event()
        self.failures: list[str] = []

        def send():
            n = 0
            while not stop.wait(every_s):
                try:
                    self.ask(f"Add task: call the plumber about job {n}", f"client-{n % users}")
                except urllib.error.URLError as exc:
                    self.failures.append(f"request {n}: {exc}")
                n += 1

        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(60)
