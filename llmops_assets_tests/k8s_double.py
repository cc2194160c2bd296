"""A test double of the Kubernetes API: a loopback HTTP server implementing the calls dagster-k8s
makes (Jobs: create, read, read status, list, delete; Pods: list, read, delete, logs; Events:
list) and those the serving target makes (Deployments: create, read status, delete; Services:
create, read, delete). It validates each Job, Deployment and Service strictly against the
Kubernetes 1.33 schema (kubernetes-validate) before accepting it, and runs the container command
of each Job and of each Deployment's one replica as a local process, with an empty LLMOPS_HOME of
its own; a Deployment's replica is ready once its readiness probe's path answers.

What it does not do: scheduling (every pod starts at once, on this machine), images (the command
runs from this checkout's virtualenv), volumes (the instance ConfigMap the run launcher mounts at
DAGSTER_HOME is the test's instance folder instead), a pod network (each Deployment's container
gets a free loopback port in $PORT, and its Service answers with cluster IP 127.0.0.1 and that
port), GPUs, CPU and memory (requested, recorded, not enforced), restarts (dagster-k8s sets
backoffLimit 0; a Deployment's dead replica is not replaced), watches and admission webhooks.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import kubernetes_validate

KUBERNETES_VERSION = "1.33"
# What the machine's environment lends a pod: the project's own variables come only from the
# Job's env and envFrom, as on a cluster.
_HOST_ONLY = ("LLMOPS_", "DAGSTER_", "AWS_", "WANDB_")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Pod:
    job: dict  # the Job or Deployment that owns it
    name: str
    process: subprocess.Popen
    home: Path
    log: Path
    started: str = field(default_factory=_now)
    finished: str | None = None
    killed: bool = False
    port: int | None = None  # a Deployment's replica: where it listens
    ready: bool = False

    @property
    def exit_code(self) -> int | None:
        return self.process.poll()

    def manifest(self, namespace: str) -> dict:
        code = self.exit_code
        phase = "Running" if code is None else "Succeeded" if code == 0 else "Failed"
        state = ({"running": {"startedAt": self.started}} if code is None else
                 {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                 "startedAt": self.started, "finishedAt": self.finished or _now()}})
        template = self.job["spec"]["template"]
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": self.name, "namespace": namespace, "uid": self.name,
                             "labels": {**template["metadata"].get("labels", {}),
                                        **({"job-name": self.job["metadata"]["name"]} if self.job["kind"] == "Job" else {})}},
                "spec": template["spec"],
                "status": {"phase": phase, "startTime": self.started,
                           "containerStatuses": [{"name": c["name"], "image": c["image"], "imageID": "", "ready": code is None,
                                                  "restartCount": 0, "state": state}
                                                 for c in template["spec"]["containers"]]}}


class KubernetesDouble:
    """Start with `start()` (returns a kubeconfig file for the clients), stop with `stop()`.
    `config_maps` and `secrets` are what envFrom and secretKeyRef resolve against;
    `instance_home` stands in for the instance ConfigMap volume."""

    def __init__(self, config_maps: dict[str, dict[str, str]], secrets: dict[str, dict[str, str]], instance_home: Path,
                 workdir: Path, executable_dir: Path):
        self.config_maps, self.secrets, self.instance_home = config_maps, secrets, instance_home
        self.workdir, self.executable_dir = workdir, executable_dir
        self.jobs: dict[tuple[str, str], dict] = {}
        self.pods: dict[tuple[str, str], Pod] = {}
        self.deployments: dict[tuple[str, str], dict] = {}
        self.services: dict[tuple[str, str], dict] = {}
        self.created: list[dict] = []  # every Job accepted, in order
        self.refused: list[str] = []  # why each refused Job was refused
        self.unknown_calls: list[str] = []
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    # -- lifecycle
    def start(self) -> Path:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _reply(self, code: int, body) -> None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                url = urllib.parse.urlparse(self.path)
                query = urllib.parse.parse_qs(url.query)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                try:
                    code, reply = double.route(method, url.path, query, body)
                except Exception as exc:  # a bug in the double: say so to the client, loudly
                    code, reply = 500, _status(500, f"k8s double: {type(exc).__name__}: {exc}")
                self._reply(code, reply)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_DELETE(self):
                self._handle("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        kubeconfig = self.workdir / "kubeconfig.yaml"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "double",
            "clusters": [{"name": "double", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
            "users": [{"name": "double", "user": {"token": "test-double"}}],
            "contexts": [{"name": "double", "context": {"cluster": "double", "user": "double", "namespace": "llmops"}}]}))
        return kubeconfig

    def stop(self) -> None:
        for pod in list(self.pods.values()):
            if pod.exit_code is None:
                os.killpg(pod.process.pid, signal.SIGKILL)
        if self.server:
            self.server.shutdown()

    def kill(self, pod: Pod) -> None:
        """A pod that dies (evicted, OOM-killed, its node lost): its process group gets SIGKILL."""
        pod.killed = True
        os.killpg(pod.process.pid, signal.SIGKILL)
        pod.process.wait()
        pod.finished = _now()

    def wait_for_pod(self, predicate, timeout: float) -> Pod:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = [p for p in self.pods.values() if predicate(p)]
            if found:
                return found[0]
            time.sleep(0.2)
        raise TimeoutError("no such pod appeared in the Kubernetes double")

    # -- the API
    def route(self, method: str, path: str, query: dict, body: dict | None) -> tuple[int, dict | str]:
        parts = path.strip("/").split("/")
        if parts[:3] == ["apis", "batch", "v1"] and len(parts) >= 5 and parts[3] == "namespaces" and parts[5:6] == ["jobs"]:
            namespace, rest = parts[4], parts[6:]
            if method == "POST" and not rest:
                return self.create_job(namespace, body)
            if method == "GET" and not rest:
                return 200, {"apiVersion": "batch/v1", "kind": "JobList", "metadata": {"resourceVersion": "1"},
                             "items": [self.job_manifest(namespace, name) for (ns, name) in list(self.jobs)
                                       if ns == namespace and _selected(self.jobs[(ns, name)], query)]}
            if rest and (namespace, rest[0]) not in self.jobs:
                return 404, _status(404, f'jobs.batch "{rest[0]}" not found')
            if method == "GET" and len(rest) in (1, 2):
                return 200, self.job_manifest(namespace, rest[0])
            if method == "DELETE" and len(rest) == 1:
                pod = self.pods.get((namespace, rest[0]))
                if pod and pod.exit_code is None:
                    self.kill(pod)
                return 200, _status(200, "deleted", status="Success")
        if parts[:3] == ["apis", "apps", "v1"] and len(parts) >= 6 and parts[3] == "namespaces" and parts[5] == "deployments":
            namespace, rest = parts[4], parts[6:]
            if method == "POST" and not rest:
                return self.create_deployment(namespace, body)
            if rest and (namespace, rest[0]) not in self.deployments:
                return 404, _status(404, f'deployments.apps "{rest[0]}" not found')
            if method == "GET" and len(rest) in (1, 2):
                return 200, self.deployment_manifest(namespace, rest[0])
            if method == "DELETE" and len(rest) == 1:
                with self.lock:
                    self.deployments.pop((namespace, rest[0]))
                    pod = self.pods.pop((namespace, f"deployment/{rest[0]}"))
                if pod.exit_code is None:
                    self.kill(pod)
                return 200, _status(200, "deleted", status="Success")
        if parts[:2] == ["api", "v1"] and len(parts) >= 5 and parts[2] == "namespaces" and parts[4] == "services":
            namespace, rest = parts[3], parts[5:]
            if method == "POST" and not rest:
                return self.create_service(namespace, body)
            if rest and (namespace, rest[0]) not in self.services:
                return 404, _status(404, f'services "{rest[0]}" not found')
            if method == "GET" and len(rest) == 1:
                return 200, self.services[(namespace, rest[0])]
            if method == "DELETE" and len(rest) == 1:
                return 200, self.services.pop((namespace, rest[0]))
        if parts[:2] == ["api", "v1"] and len(parts) >= 5 and parts[2] == "namespaces":
            namespace, kind, rest = parts[3], parts[4], parts[5:]
            if kind == "events" and method == "GET":
                return 200, {"apiVersion": "v1", "kind": "EventList", "metadata": {}, "items": []}
            if kind == "pods":
                pods = {pod.name: pod for (ns, _), pod in self.pods.items() if ns == namespace}
                if method == "GET" and not rest:
                    return 200, {"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"},
                                 "items": [p.manifest(namespace) for p in pods.values()
                                           if _selected(p.manifest(namespace), query)]}
                if rest and rest[0] not in pods:
                    return 404, _status(404, f'pods "{rest[0]}" not found')
                pod = pods[rest[0]] if rest else None
                if method == "GET" and len(rest) == 1:
                    return 200, pod.manifest(namespace)
                if method == "GET" and rest[1:] == ["log"]:
                    return 200, pod.log.read_text(errors="replace")
                if method == "DELETE" and len(rest) == 1:
                    if pod.exit_code is None:
                        self.kill(pod)
                    return 200, pod.manifest(namespace)
        self.unknown_calls.append(f"{method} {path}")
        return 404, _status(404, f"the Kubernetes double does not implement {method} {path}")

    def invalid(self, manifest: dict) -> tuple[int, dict] | None:
        """The 422 the API server would answer for a manifest the schema refuses, else None."""
        name = f"{manifest.get('kind')}/{manifest['metadata']['name']}"
        try:
            kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            self.refused.append(f"{name}: {exc.message}")
            return 422, _status(422, f"{name} is invalid: {exc.message}")
        return None

    def admitted(self, namespace: str, manifest: dict, existing: dict, resource: str) -> tuple[tuple | None, dict]:
        """The API server's admission: the schema (422), a name taken (409); else None and the
        manifest as stored, with namespace, uid and creation time."""
        name = manifest["metadata"]["name"]
        if refusal := self.invalid(manifest):
            return refusal, manifest
        if (namespace, name) in existing:
            return (409, _status(409, f'{resource} "{name}" already exists')), manifest
        return None, {**manifest, "metadata": {**manifest["metadata"], "namespace": namespace,
                                               "uid": secrets.token_hex(8), "creationTimestamp": _now()}}

    def create_job(self, namespace: str, job: dict) -> tuple[int, dict]:
        name = job["metadata"]["name"]
        refusal, job = self.admitted(namespace, job, self.jobs, "jobs.batch")
        if refusal:
            return refusal
        with self.lock:
            self.jobs[(namespace, name)] = job
            self.created.append(job)
            self.pods[(namespace, name)] = self.run_pod(job, f"{name}-{secrets.token_hex(3)}")
        return 201, job

    def create_deployment(self, namespace: str, deployment: dict) -> tuple[int, dict]:
        name = deployment["metadata"]["name"]
        refusal, deployment = self.admitted(namespace, deployment, self.deployments, "deployments.apps")
        if refusal:
            return refusal
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with self.lock:
            self.deployments[(namespace, name)] = deployment
            pod = self.run_pod(deployment, f"{name}-{secrets.token_hex(3)}", {"PORT": str(port)})
            pod.port = port
            self.pods[(namespace, f"deployment/{name}")] = pod
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        path = container.get("readinessProbe", {}).get("httpGet", {}).get("path", "/")
        threading.Thread(target=self._watch_readiness, args=(pod, path), daemon=True).start()
        return 201, deployment

    def deployment_manifest(self, namespace: str, name: str) -> dict:
        pod = self.pods[(namespace, f"deployment/{name}")]
        ready = int(pod.ready and pod.exit_code is None)
        return {**self.deployments[(namespace, name)],
                "status": {"replicas": 1, "readyReplicas": ready, "availableReplicas": ready,
                           "unavailableReplicas": 1 - ready, "observedGeneration": 1}}

    def create_service(self, namespace: str, service: dict) -> tuple[int, dict]:
        name = service["metadata"]["name"]
        refusal, service = self.admitted(namespace, service, self.services, "services")
        if refusal:
            return refusal
        selector = service["spec"].get("selector", {})
        ports = [p.port for (ns, _), p in self.pods.items() if ns == namespace and p.port and p.job["kind"] == "Deployment"
                 and selector.items() <= p.job["spec"]["template"]["metadata"].get("labels", {}).items()]
        if not ports:
            return 422, _status(422, f"the Kubernetes double routes a Service only to a Deployment created before it: "
                                     f"none matches {selector}")
        spec = {**service["spec"], "clusterIP": "127.0.0.1",
                "ports": [{**service["spec"]["ports"][0], "port": ports[0], "protocol": "TCP"}]}
        self.services[(namespace, name)] = {**service, "spec": spec}
        return 201, self.services[(namespace, name)]

    @staticmethod
    def _watch_readiness(pod: Pod, path: str) -> None:
        import urllib.request

        while pod.exit_code is None and not pod.ready:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{pod.port}{path}", timeout=2)
                pod.ready = True
            except OSError:
                time.sleep(0.5)

    def job_manifest(self, namespace: str, name: str) -> dict:
        job, pod = self.jobs[(namespace, name)], self.pods[(namespace, name)]
        code = pod.exit_code
        status = {"startTime": pod.started, "active": 1} if code is None else (
            {"startTime": pod.started, "succeeded": 1, "completionTime": pod.finished or _now()} if code == 0 else
            {"startTime": pod.started, "failed": 1,
             "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]})
        return {**job, "status": status}

    def run_pod(self, job: dict, pod_name: str, extra_environment: dict[str, str] | None = None) -> Pod:
        [container] = job["spec"]["template"]["spec"]["containers"]
        home = Path(tempfile.mkdtemp(prefix=f"{pod_name}-", dir=self.workdir))
        environment = {k: v for k, v in os.environ.items() if not k.startswith(_HOST_ONLY)}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                environment.update(self.config_maps[source["configMapRef"]["name"]])
            if "secretRef" in source:
                environment.update(self.secrets[source["secretRef"]["name"]])
        for variable in container.get("env", []):
            if "value" in variable:
                environment[variable["name"]] = variable["value"]
            elif "secretKeyRef" in variable.get("valueFrom", {}):
                reference = variable["valueFrom"]["secretKeyRef"]
                environment[variable["name"]] = self.secrets.get(reference["name"], {}).get(reference["key"], "")
        environment.update({"DAGSTER_HOME": str(self.instance_home), "LLMOPS_HOME": str(home / "llmops"),
                            "HOSTNAME": pod_name, **(extra_environment or {})})
        command = [*container.get("command", []), *container.get("args", [])]
        executable = shutil.which(command[0], path=str(self.executable_dir)) or command[0]
        log = home / "pod.log"
        with log.open("wb") as out:
            process = subprocess.Popen([executable, *command[1:]], cwd=home, env=environment, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        pod = Pod(job=job, name=pod_name, process=process, home=home, log=log)
        threading.Thread(target=self._reap, args=(pod,), daemon=True).start()
        return pod

    @staticmethod
    def _reap(pod: Pod) -> None:
        pod.process.wait()
        pod.finished = pod.finished or _now()


def _selected(manifest: dict, query: dict) -> bool:
    """Whether `manifest` matches the request's labelSelector (equality terms, comma-separated)."""
    labels = manifest["metadata"].get("labels", {})
    for selector in query.get("labelSelector", []):
        for term in filter(None, selector.split(",")):
            key, _, value = term.partition("=")
            if labels.get(key) != value.lstrip("="):
                return False
    return True


def _status(code: int, message: str, status: str = "Failure") -> dict:
    return {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": status, "message": message,
            "reason": {404: "NotFound", 409: "AlreadyExists", 422: "Invalid"}.get(code, ""), "code": code}
