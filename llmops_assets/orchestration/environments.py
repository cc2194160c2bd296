"""Where the code location runs, chosen by `LLMOPS_ENVIRONMENT`: the resources and executor of
each environment, around the same assets, checks, jobs and sensors."""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from dagster import in_process_executor, multiprocess_executor

from llmops_assets.orchestration.resources import ArtifactStoreResource, PipelineConfig
from llmops_assets.settings import PipelineSettings


@dataclass(frozen=True)
class Environment:
    resources: dict[str, Any]
    executor: Any


def local(pipeline: PipelineConfig, artifacts: ArtifactStoreResource, gpu_steps: Collection[str]) -> Environment:
    """One machine: steps share one process (the multiprocess executor costs seconds per step,
    and models pass through the artifact store anyway); artifacts in `$LLMOPS_ARTIFACTS` or
    `$LLMOPS_HOME/artifacts`."""
    return Environment({"pipeline": pipeline, "artifacts": artifacts}, in_process_executor)


def multiprocess(pipeline: PipelineConfig, artifacts: ArtifactStoreResource, gpu_steps: Collection[str]) -> Environment:
    """One machine laid out like the cluster: each step in its own process with its own read
    cache, sharing only the Dagster instance and the artifact store."""
    private = ArtifactStoreResource(home=artifacts.home, url=artifacts.url, private_cache=True)
    return Environment({"pipeline": pipeline, "artifacts": private}, multiprocess_executor)


def kubernetes(pipeline: PipelineConfig, artifacts: ArtifactStoreResource, gpu_steps: Collection[str]) -> Environment:
    """Each step a Kubernetes Job (dagster-k8s), with the pod its settings ask for; the run
    itself is launched by the instance's K8sRunLauncher (deploy/helm/values.yaml). Pods share no
    disk, so the artifact root must be an object store and the request log a database."""
    from dagster_k8s import k8s_job_executor  # imports the Kubernetes client: half a second, only here

    settings = pipeline.settings
    if not artifacts.store.remote:
        raise ValueError(f"LLMOPS_ENVIRONMENT=kubernetes: the artifact root {artifacts.store.url} is a local folder, which "
                         "step pods do not share; set LLMOPS_ARTIFACTS to s3://bucket/prefix")
    if not settings.stages.deployment.gateway.request_log:
        raise ValueError("LLMOPS_ENVIRONMENT=kubernetes: stages.deployment.gateway.request_log is empty, so each pod would "
                         "keep its own SQLite log; set it to the shared Postgres (postgresql+psycopg2://...)")
    if settings.stages.deployment.server != "kubernetes":
        raise ValueError(f"LLMOPS_ENVIRONMENT=kubernetes: stages.deployment.server is {settings.stages.deployment.server}, "
                         "whose servers would live and die inside a step pod; set it to kubernetes (a Deployment and "
                         "Service per release and for the gateway)")
    executor = k8s_job_executor.configured(k8s_executor_config(settings, gpu_steps), name="llmops_k8s")
    return Environment({"pipeline": pipeline, "artifacts": artifacts}, executor)


def k8s_executor_config(settings: PipelineSettings, gpu_steps: Collection[str]) -> dict:
    """The k8s_job_executor's config: image, namespace and environment of every step pod, and
    each step's pod from the settings (training steps: `step_pod_config(gpu=True)`)."""
    cluster = settings.kubernetes
    return {
        "job_namespace": cluster.namespace,
        "job_image": cluster.image,
        "image_pull_policy": cluster.image_pull_policy,
        "env_config_maps": cluster.env_config_maps,
        "env_secrets": cluster.env_secrets,
        "step_k8s_config": step_pod_config(settings, gpu=False),
        "per_step_k8s_config": {step: step_pod_config(settings, gpu=True) for step in sorted(gpu_steps)},
    }


def step_pod_config(settings: PipelineSettings, gpu: bool) -> dict:
    """The `dagster-k8s/config` of a step's pod: CPU and memory for every step; for a training
    step, its GPUs, image, node selector, tolerations and a memory-backed /dev/shm."""
    if not gpu:
        requests = {"cpu": settings.kubernetes.cpu, "memory": settings.kubernetes.memory}
        return {"container_config": {"resources": {"requests": requests, "limits": requests}}}
    wanted = settings.stages.training.kubernetes
    requests = {"cpu": wanted.cpu, "memory": wanted.memory} | ({"nvidia.com/gpu": str(wanted.gpus)} if wanted.gpus else {})
    return {
        "container_config": {
            "image": settings.kubernetes.gpu_image if wanted.gpus else settings.kubernetes.image,
            "resources": {"requests": requests, "limits": requests},
            "volume_mounts": [{"name": "dshm", "mount_path": "/dev/shm"}],
        },
        "pod_spec_config": {
            "node_selector": wanted.node_selector if wanted.gpus else {},
            "tolerations": [t.model_dump() for t in wanted.tolerations] if wanted.gpus else [],
            "volumes": [{"name": "dshm", "empty_dir": {"medium": "Memory", "size_limit": wanted.shm_size}}],
        },
    }


ENVIRONMENTS = {"local": local, "multiprocess": multiprocess, "kubernetes": kubernetes}


def current(name: str | None = None, pipeline: PipelineConfig | None = None, artifacts: ArtifactStoreResource | None = None,
            gpu_steps: Collection[str] = ()) -> Environment:
    name = name or os.environ.get("LLMOPS_ENVIRONMENT", "local")
    if name not in ENVIRONMENTS:
        raise ValueError(f"LLMOPS_ENVIRONMENT={name!r} is not an environment; choose one of {sorted(ENVIRONMENTS)}")
    return ENVIRONMENTS[name](pipeline or PipelineConfig(), artifacts or ArtifactStoreResource(), gpu_steps)
