"""Serving on Kubernetes (`server: kubernetes`): each release a Deployment and a Service running
llama.cpp on the GGUF it fetches from the artifact store, the gateway another pair. The
deployment assets manage them through the Kubernetes API, so what is served outlives the step pod
that started it; retiring a release deletes its pair.

In the cluster the clients use the pod's service account; elsewhere `$KUBECONFIG`."""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Any

from llmops_assets.deployment import servers
from llmops_assets.deployment.config import DeploymentSettings, ServingPodSettings
from llmops_assets.deployment.targets import Candidate, Probe

GATEWAY = "llmops-gateway"
_MEMORY_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


@functools.cache
def clients() -> tuple[Any, Any]:
    """(AppsV1Api, CoreV1Api) for the cluster this runs in, else the one `$KUBECONFIG` names;
    loaded once a process (wait_ready polls twice a second)."""
    import kubernetes

    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        kubernetes.config.load_incluster_config()
    else:
        kubernetes.config.load_kube_config()
    return kubernetes.client.AppsV1Api(), kubernetes.client.CoreV1Api()


def manifests(name: str, component: str, command: list[str], pod: ServingPodSettings) -> tuple[dict, dict]:
    """The Deployment (one replica, ready once it answers /v1/models) and its Service."""
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/component": component,
              "app.kubernetes.io/part-of": "llmops-assets"}
    limits = {"cpu": pod.cpu, "memory": pod.memory}
    container = {
        "name": component, "image": pod.image, "command": command,
        "ports": [{"containerPort": pod.port, "name": "http"}],
        "env": [{"name": "PORT", "value": str(pod.port)}],
        "envFrom": [{"configMapRef": {"name": n}} for n in pod.env_config_maps]
                   + [{"secretRef": {"name": n}} for n in pod.env_secrets],
        "resources": {"requests": limits, "limits": limits},
        "readinessProbe": {"httpGet": {"path": "/v1/models", "port": "http"}, "periodSeconds": 2},
    }
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
                  "spec": {"replicas": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                           "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": labels},
               "spec": {"selector": {"app.kubernetes.io/name": name},
                        "ports": [{"port": pod.port, "targetPort": "http", "name": "http"}]}}
    return deployment, service


def apply(namespace: str, deployment: dict, service: dict) -> str:
    """Create the pair; the Service's endpoint (its cluster IP: reachable from any pod)."""
    apps, core = clients()
    apps.create_namespaced_deployment(namespace, deployment)
    created = core.create_namespaced_service(namespace, service)
    return f"http://{created.spec.cluster_ip}:{created.spec.ports[0].port}/v1"


def _unless_missing(call, *args) -> Any:
    """`call(*args)`, or None when the Kubernetes API answers 404: the object is not there."""
    import kubernetes

    try:
        return call(*args)
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def endpoint_of(namespace: str, name: str) -> str | None:
    """The endpoint of the Service `name`, or None when there is none."""
    service = _unless_missing(clients()[1].read_namespaced_service, name, namespace)
    return service and f"http://{service.spec.cluster_ip}:{service.spec.ports[0].port}/v1"


def ready(namespace: str, name: str) -> bool:
    deployment = _unless_missing(clients()[0].read_namespaced_deployment_status, name, namespace)
    return bool(deployment and deployment.status.ready_replicas)


def wait_ready(namespace: str, name: str, timeout_s: float) -> float:
    """Seconds until the Deployment has a ready replica; TimeoutError naming it otherwise."""
    started = time.monotonic()
    while not ready(namespace, name):
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"Deployment {namespace}/{name} had no ready replica after {timeout_s:.0f} s "
                               f"(kubectl -n {namespace} describe deployment {name})")
        time.sleep(0.5)
    return time.monotonic() - started


def delete(namespace: str, name: str) -> None:
    """Delete the pair (what is gone already is fine)."""
    apps, core = clients()
    for remove in (apps.delete_namespaced_deployment, core.delete_namespaced_service):
        _unless_missing(remove, name, namespace)


def memory_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity ("2Gi", "512M", "1073741824") in bytes."""
    for unit, factor in _MEMORY_UNITS.items():
        if quantity.endswith(unit):
            return int(float(quantity[: -len(unit)]) * factor)
    return int(quantity)


class KubernetesTarget:
    """A release as the Deployment and Service `llmops-release-<number>`."""

    name = "kubernetes"

    def __init__(self, settings: DeploymentSettings):
        self.settings, self.pod = settings, settings.kubernetes

    def start(self, gguf_path: Path, ollama_spec: dict[str, Any], release_number: int) -> Candidate:
        if gguf_path.parent.parent.name != "gguf_model":
            raise ValueError(f"{gguf_path}: not a gguf_model artifact; a release pod fetches its GGUF by version")
        version, name = gguf_path.parent.name, f"llmops-release-{release_number}"
        command = ["llmops", "model-server", version, "--alias", self.settings.model_name,
                   "--n-ctx", str(self.settings.n_ctx), "--n-threads", str(self.settings.n_threads)]
        endpoint = apply(self.pod.namespace, *manifests(name, "model-server", command, self.pod))
        return Candidate(self.name, endpoint, self.settings.model_name,
                         extra={"deployment": name, "namespace": self.pod.namespace})

    def probe(self, candidate: Candidate, messages: list[dict[str, str]]) -> Probe:
        healthy = wait_ready(candidate.extra["namespace"], candidate.extra["deployment"],
                             self.settings.quality_gate.health_timeout_s)
        key = self.settings.api_key()
        servers.first_token_ms(candidate.endpoint, candidate.model, messages, key)  # pays one-off warm-up
        ttft = min(servers.first_token_ms(candidate.endpoint, candidate.model, messages, key) for _ in range(3))
        return Probe(healthy, ttft, memory_bytes(self.pod.memory))

    def promote(self, candidate: Candidate) -> None:
        """Nothing to switch: the gateway routes by the registry."""

    def retire(self, status: dict[str, Any]) -> None:
        delete(status["namespace"], status["deployment"])

    def discard(self, candidate: Candidate) -> None:
        delete(candidate.extra["namespace"], candidate.extra["deployment"])

    def serving(self, status: dict[str, Any]) -> bool:
        return ready(status["namespace"], status["deployment"])


def ensure_gateway(settings: DeploymentSettings) -> str:
    """The gateway's endpoint: its Deployment and Service, created when there are none."""
    pod = settings.kubernetes
    endpoint = endpoint_of(pod.namespace, GATEWAY)
    if endpoint is None:
        command = ["llmops", "gateway", "--host", "0.0.0.0"]  # the port: $PORT
        endpoint = apply(pod.namespace, *manifests(GATEWAY, "gateway", command, pod))
    wait_ready(pod.namespace, GATEWAY, settings.quality_gate.health_timeout_s)
    return endpoint
