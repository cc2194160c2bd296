"""The code location on Kubernetes, without a cluster: every step's Job as dagster-k8s itself
renders it (`construct_dagster_k8s_job`, no API call), validated strictly against the Kubernetes
1.33 schema by kubernetes-validate; a snapshot pins each step's pod (`LLMOPS_UPDATE_SNAPSHOT=1`
rewrites it on purpose)."""

import json
import os
from pathlib import Path

import kubernetes_validate
import pytest
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import DagsterK8sJobConfig, UserDefinedDagsterK8sConfig, construct_dagster_k8s_job, get_k8s_job_name
from kubernetes.client import ApiClient

from llmops_assets.definitions import build_definitions, defs
from llmops_assets.orchestration.environments import k8s_executor_config
from llmops_assets.orchestration.resources import GPU_POOL, ArtifactStoreResource, PipelineConfig
from llmops_assets.settings import load_settings
from llmops_assets_tests.conftest import derived_config

SNAPSHOT = Path(__file__).parent / "k8s_step_pods.json"
KUBERNETES_VERSION = "1.33"
TRAINING_STEPS = {"cpt_model", "hpo_study", "sft_adapter", "dpo_adapter"}


class HelmRunLauncher:
    """What a step's Job takes from the run launcher, as Dagster's Helm chart sets it up
    (deploy/helm/values.yaml): the instance ConfigMap, DAGSTER_HOME and the Postgres secret."""

    dagster_home = "/opt/dagster/dagster_home"
    instance_config_map = "dagster-instance"
    postgres_password_secret = "dagster-postgresql-secret"


def render_step_job(executor_config: dict, step: str) -> dict:
    """The Job the k8s_job_executor creates for `step`, built the way its step handler builds it
    (K8sStepHandler: executor context, merged with the step's own config), as the API would get it."""
    context = K8sContainerContext(
        image_pull_policy=executor_config["image_pull_policy"], env_config_maps=executor_config["env_config_maps"],
        env_secrets=executor_config["env_secrets"], namespace=executor_config["job_namespace"],
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(executor_config["step_k8s_config"]),
    ).merge(K8sContainerContext(run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(
        executor_config["per_step_k8s_config"].get(step, {}))))
    job_config: DagsterK8sJobConfig = context.get_k8s_job_config(executor_config["job_image"], HelmRunLauncher())
    name = f"dagster-step-{get_k8s_job_name('0' * 36, step)}"
    job = construct_dagster_k8s_job(job_config, ["dagster", "api", "execute_step"], name, pod_name=name,
                                    user_defined_k8s_config=context.run_k8s_config, component="step_worker",
                                    labels={"dagster/op": step})
    return ApiClient().sanitize_for_serialization(job)


def every_step() -> list[str]:
    return sorted(node.name for node in defs.resolve_job_def("full_pipeline").graph.node_defs)


def pod_summary(job: dict) -> dict:
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    return {"image": container["image"], "requests": container["resources"]["requests"],
            "node_selector": pod.get("nodeSelector", {}), "tolerations": [t["key"] for t in pod.get("tolerations", [])],
            "shm": [v["emptyDir"]["sizeLimit"] for v in pod.get("volumes", []) if v["name"] == "dshm"]}


def test_every_step_job_is_valid_kubernetes_and_only_training_steps_request_gpus():
    gpu_steps = {a.op.name for a in defs.assets if getattr(a, "op", None) is not None and a.op.pool == GPU_POOL}
    assert gpu_steps == TRAINING_STEPS
    config = k8s_executor_config(load_settings(), gpu_steps)
    pods = {}
    for step in every_step():
        job = render_step_job(config, step)
        kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)  # raises, naming the field, on any error
        pods[step] = pod_summary(job)
    if os.environ.get("LLMOPS_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps(pods, indent=1, sort_keys=True) + "\n")
    assert pods == json.loads(SNAPSHOT.read_text()), "the step pods changed; if intended, update the snapshot"
    with_gpus = {step for step, pod in pods.items() if "nvidia.com/gpu" in pod["requests"]}
    assert with_gpus == TRAINING_STEPS
    assert all(pods[step]["tolerations"] and pods[step]["shm"] for step in TRAINING_STEPS)
    assert not any(pod["tolerations"] or pod["node_selector"] for step, pod in pods.items() if step not in TRAINING_STEPS)


def test_the_pods_follow_the_settings_not_the_code(tmp_path):
    changed = load_settings(derived_config(tmp_path, {
        "kubernetes": {"image": "registry.example/llmops:2", "memory": "6Gi"},
        "stages": {"training": {"kubernetes": {"gpus": 4, "memory": "64Gi", "shm_size": "16Gi",
                                               "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-l4"}}}}}))
    config = k8s_executor_config(changed, TRAINING_STEPS)
    training = pod_summary(render_step_job(config, "sft_adapter"))
    other = pod_summary(render_step_job(config, "eval_report"))
    assert training["requests"] == {"cpu": "4", "memory": "64Gi", "nvidia.com/gpu": "4"}
    assert training["node_selector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"} and training["shm"] == ["16Gi"]
    assert other == {"image": "registry.example/llmops:2", "requests": {"cpu": "1", "memory": "6Gi"},
                     "node_selector": {}, "tolerations": [], "shm": []}


def test_the_validator_refuses_what_the_cluster_would():
    job = render_step_job(k8s_executor_config(load_settings(), TRAINING_STEPS), "sft_adapter")
    job["spec"]["template"]["spec"]["containers"][0]["resources"]["limitz"] = {"cpu": "1"}
    with pytest.raises(kubernetes_validate.ValidationError, match="limitz"):
        kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)


def test_the_kubernetes_environment_uses_the_k8s_executor_and_refuses_what_pods_cannot_share(tmp_path):
    shared_log = derived_config(tmp_path, {"stages": {"deployment": {"server": "kubernetes", "gateway": {
        "request_log": "postgresql+psycopg2://dagster@postgres/llmops"}}}})
    on_cluster = build_definitions(PipelineConfig(config_path=str(shared_log)),
                                   ArtifactStoreResource(home=str(tmp_path), url="s3://llmops-artifacts/prod"),
                                   environment="kubernetes")
    assert on_cluster.executor.name == "llmops_k8s"
    with pytest.raises(ValueError, match="is a local folder, which step pods do not share; set LLMOPS_ARTIFACTS"):
        build_definitions(PipelineConfig(config_path=str(shared_log)), ArtifactStoreResource(home=str(tmp_path)),
                          environment="kubernetes")
    with pytest.raises(ValueError, match="request_log is empty"):
        build_definitions(PipelineConfig(), ArtifactStoreResource(home=str(tmp_path), url="s3://llmops-artifacts/prod"),
                          environment="kubernetes")
    (tmp_path / "local_server").mkdir()
    local_server = derived_config(tmp_path / "local_server", {"stages": {"deployment": {"gateway": {
        "request_log": "postgresql+psycopg2://dagster@postgres/llmops"}}}})
    with pytest.raises(ValueError, match="would live and die inside a step pod; set it to kubernetes"):
        build_definitions(PipelineConfig(config_path=str(local_server)),
                          ArtifactStoreResource(home=str(tmp_path), url="s3://llmops-artifacts/prod"), environment="kubernetes")


def test_the_serving_deployments_and_services_are_valid_kubernetes_in_the_cluster_settings():
    from llmops_assets.deployment.kubernetes import manifests, memory_bytes

    pod = load_settings().stages.deployment.kubernetes
    deployment, service = manifests("llmops-release-7", "model-server", ["llmops", "model-server", "abc"], pod)
    for manifest in (deployment, service):
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    cluster = load_settings().kubernetes
    assert container["image"] == cluster.image and pod.namespace == cluster.namespace
    assert [e["configMapRef"]["name"] for e in container["envFrom"] if "configMapRef" in e] == cluster.env_config_maps
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert memory_bytes("2Gi") == 2 * 2**30 and memory_bytes("512M") == 512 * 10**6 and memory_bytes("1000") == 1000


DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_the_cluster_instance_yaml_is_valid_dagster_and_dagster_k8s_config():
    from dagster._config import validate_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster_k8s import K8sRunLauncher

    config, _ = dagster_instance_config(str(DEPLOY), "dagster.yaml")  # raises on an invalid instance config
    launcher = validate_config(K8sRunLauncher.config_type(), config["run_launcher"]["config"])
    assert launcher.success, launcher.errors
    assert config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    assert config["run_monitoring"]["enabled"] and config["run_retries"]["max_retries"] == 2


def test_the_serving_role_is_valid_kubernetes_and_grants_what_the_serving_target_calls():
    import yaml

    role, binding = yaml.safe_load_all((DEPLOY / "rbac.yaml").read_text())
    for manifest in (role, binding):
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    granted = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    needed = {("apps", "deployments", v) for v in ("create", "get", "delete")} | {("apps", "deployments/status", "get")} \
        | {("", "services", v) for v in ("create", "get", "delete")}
    assert needed <= granted
    assert binding["subjects"][0]["name"] == yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())["global"][
        "serviceAccountName"]


def test_the_helm_values_and_the_settings_name_the_same_things():
    import yaml

    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    cluster = load_settings().kubernetes
    [code_location] = values["dagster-user-deployments"]["deployments"]
    assert code_location["dagsterApiGrpcArgs"] == ["--module-name", "llmops_assets.definitions", "--attribute", "defs"]
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher" and launcher["jobNamespace"] == cluster.namespace
    for environment in (code_location, launcher):
        assert [m["name"] for m in environment["envConfigMaps"]] == cluster.env_config_maps
        assert [s["name"] for s in environment["envSecrets"]] == cluster.env_secrets
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    daemon = values["dagsterDaemon"]
    assert daemon["runMonitoring"]["enabled"] and daemon["runRetries"]["enabled"]
    assert values["concurrency"]["pools"] == {"defaultLimit": 1, "granularity": "op"}  # GPU steps queue
    assert daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
