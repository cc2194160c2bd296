"""The tiny pipeline end to end through dagster-k8s: `dagster job launch` hands the run to the
real `K8sRunLauncher`, whose run worker runs the graph with the real `k8s_job_executor`, one
Kubernetes Job per step, against a test double of the Kubernetes API (`k8s_double.py`: a loopback
server that validates every Job against the Kubernetes schema and runs its container command as a
local process with an empty LLMOPS_HOME; it does no scheduling, images, volumes or GPUs). The
instance is a real PostgreSQL on 127.0.0.1 and the artifacts are in moto's server mode (a test
double of S3): the pods share nothing else. A step whose pod is killed is retried; a failed gate
still stops deployment."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus

from llmops_assets.core.inference import chat_completion
from llmops_assets.core.releases import ReleaseRegistry
from llmops_assets.core.storage import ArtifactStore
from llmops_assets.definitions import defs
from llmops_assets.deployment import gateway, servers
from llmops_assets_tests.conftest import derived_config
from llmops_assets_tests.graph import assets_of_every_run
from llmops_assets_tests.k8s_double import KubernetesDouble
from llmops_assets_tests.postgres_server import postgres_server, write_instance
from llmops_assets_tests.s3_double import new_bucket

EVERY_RUN = assets_of_every_run(defs)
TRAINING_STEPS = {"cpt_model", "hpo_study", "sft_adapter", "dpo_adapter"}
SERVING = {"server": "kubernetes"}  # releases and the gateway as Deployments with Services
RUN_TIMEOUT_S = 1200

pytestmark = pytest.mark.slow


class Cluster:
    def __init__(self, tmp: Path, postgres: str, s3: dict[str, str], bucket: str):
        self.tmp, self.s3, self.bucket = tmp, s3, bucket
        self.instance_home = tmp / "dagster_home"
        self.instance_home.mkdir()
        request_log = {"gateway": {"request_log": f"{postgres}/llmops"}}
        self.config = derived_config(tmp, {"stages": {"deployment": SERVING | request_log}})
        (tmp / "pods").mkdir()
        self.double = KubernetesDouble(
            config_maps={"llmops-env": {"LLMOPS_ENVIRONMENT": "kubernetes", "LLMOPS_CONFIG": str(self.config),
                                        "LLMOPS_ARTIFACTS": f"{bucket}/artifacts",
                                        # in a cluster the pods' service account; here the double's address
                                        "KUBECONFIG": str(tmp / "pods" / "kubeconfig.yaml")}},
            secrets={"llmops-secrets": s3}, instance_home=self.instance_home, workdir=tmp / "pods",
            executable_dir=Path(sys.executable).parent)
        kubeconfig = self.double.start()
        write_instance(
            self.instance_home, postgres,
            run_launcher={"module": "dagster_k8s", "class": "K8sRunLauncher", "config": {
                "load_incluster_config": False, "kubeconfig_file": str(kubeconfig), "job_namespace": "llmops",
                "service_account_name": "dagster",
                "instance_config_map": "dagster-instance", "dagster_home": "/opt/dagster/dagster_home",
                "job_image": "llmops-assets:test", "env_config_maps": ["llmops-env"], "env_secrets": ["llmops-secrets"]}},
            # launched at once by `dagster job launch` (a cluster's daemon dequeues them; none runs here)
            run_coordinator={"module": "dagster.core.run_coordinator", "class": "DefaultRunCoordinator"})
        self.instance = DagsterInstance.from_config(str(self.instance_home))
        self.store = ArtifactStore(f"{bucket}/artifacts", cache_dir=tmp / "reader")

    def launch(self, config: Path) -> str:
        """`dagster job launch` as a user would, on the cluster's configuration; the run's id."""
        self.double.config_maps["llmops-env"]["LLMOPS_CONFIG"] = str(config)
        before = {r.run_id for r in self.instance.get_runs()}
        environment = {**os.environ, **self.s3, **self.double.config_maps["llmops-env"],
                       "DAGSTER_HOME": str(self.instance_home), "LLMOPS_HOME": str(self.tmp / "launcher")}
        done = subprocess.run([sys.executable, "-m", "dagster", "job", "launch", "-m", "llmops_assets.definitions", "-a",
                               "defs", "-j", "full_pipeline"], env=environment, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"dagster job launch failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
        [run_id] = {r.run_id for r in self.instance.get_runs()} - before
        return run_id

    def wait(self, run_id: str):
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline:
            run = self.instance.get_run_by_id(run_id)
            if run.is_finished:
                return run
            time.sleep(2)
        raise TimeoutError(f"run {run_id} did not finish in {RUN_TIMEOUT_S} s")

    def events(self, run_id: str, kind: DagsterEventType) -> list:
        return self.instance.get_records_for_run(run_id, of_type=kind).records

    def step_started(self, run_id: str, step: str) -> bool:
        return any(r.event_log_entry.step_key == step for r in self.events(run_id, DagsterEventType.STEP_START))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, s3_environment):
    tmp = tmp_path_factory.mktemp("k8s_double")
    with postgres_server(("dagster", "llmops")) as postgres:
        cluster = Cluster(tmp, postgres, s3_environment, new_bucket(s3_environment))
        try:
            yield cluster
        finally:
            cluster.double.stop()
            for pod in cluster.double.pods.values():  # the gateway and servers a deployment step started
                gateway.stop(pod.home / "llmops")
            for release in ReleaseRegistry(cluster.store).releases().values():
                if release.pid:
                    servers.stop(release.pid)


@pytest.fixture(scope="module")
def first_run(cluster):
    """The whole tiny graph; sft_adapter's pod is killed once its step has started."""
    started = time.monotonic()
    run_id = cluster.launch(cluster.config)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not cluster.step_started(run_id, "sft_adapter"):
        assert time.monotonic() < deadline and not cluster.instance.get_run_by_id(run_id).is_finished
        time.sleep(0.5)
    victim = cluster.double.wait_for_pod(lambda p: p.job["metadata"]["labels"].get("dagster/op") == "sft_adapter", 60)
    cluster.double.kill(victim)
    run = cluster.wait(run_id)
    print(f"tiny pipeline through K8sRunLauncher + k8s_job_executor on the Kubernetes double: "
          f"{time.monotonic() - started:.0f} s (one step killed and retried)")
    return run


def test_the_run_completes_with_every_step_in_a_validated_job_of_its_own(cluster, first_run):
    assert first_run.status == DagsterRunStatus.SUCCESS, cluster.double.pods and [
        p.log.read_text()[-3000:] for p in cluster.double.pods.values() if p.exit_code not in (0, None) and not p.killed]
    materialized = {r.asset_key.to_user_string()
                    for r in cluster.events(first_run.run_id, DagsterEventType.ASSET_MATERIALIZATION)}
    assert materialized == EVERY_RUN
    assert cluster.double.refused == [] and cluster.double.unknown_calls == []
    jobs = cluster.double.created
    components = [job["metadata"]["labels"].get("app.kubernetes.io/component") for job in jobs]
    assert components.count("run_worker") == 1
    steps = [job["metadata"]["labels"]["dagster/op"] for job in jobs if "dagster/op" in job["metadata"]["labels"]]
    started = {r.event_log_entry.step_key for r in cluster.events(first_run.run_id, DagsterEventType.STEP_START)}
    assert set(steps) == started  # each step in a Job, checks included
    assert len({p.process.pid for p in cluster.double.pods.values() if p.job["kind"] == "Job"}) == len(jobs)


def test_only_training_steps_request_gpus(cluster, first_run):
    requests = {}
    for job in cluster.double.created:
        step = job["metadata"]["labels"].get("dagster/op")
        if step:
            container = job["spec"]["template"]["spec"]["containers"][0]
            requests[step] = container["resources"]["requests"]
    with_gpus = {step for step, wanted in requests.items() if "nvidia.com/gpu" in wanted}
    assert with_gpus == TRAINING_STEPS & set(requests)
    assert "sft_adapter" in with_gpus


def test_a_killed_step_pod_is_retried_and_its_retry_finishes_the_step(cluster, first_run):
    sft_jobs = [job["metadata"]["name"] for job in cluster.double.created
                if job["metadata"]["labels"].get("dagster/op") == "sft_adapter"]
    assert len(sft_jobs) == 2 and sft_jobs[1] == f"{sft_jobs[0]}-1"  # dagster-k8s names a retry's Job <name>-<attempt>
    retries = [r.event_log_entry.step_key for r in cluster.events(first_run.run_id, DagsterEventType.STEP_UP_FOR_RETRY)]
    assert retries == ["sft_adapter"]
    assert [p.killed for p in cluster.double.pods.values() if p.job["metadata"]["name"] in sft_jobs] == [True, False]


def test_a_failed_gate_still_stops_deployment(cluster, first_run, tmp_path):
    registry = ReleaseRegistry(cluster.store)
    champion = registry.champion()
    strict = derived_config(tmp_path, {"stages": {
        "evaluation": {"quality_gate": {"min_task_accuracy": 1.0}},
        "deployment": SERVING | {"gateway": {"request_log": yaml.safe_load(cluster.config.read_text())["stages"]
                                             ["deployment"]["gateway"]["request_log"]}}}})
    served = cluster.double.pods[("llmops", "deployment/llmops-release-1")]
    run = cluster.wait(cluster.launch(strict))
    assert run.status == DagsterRunStatus.FAILURE
    failed = [r.event_log_entry.dagster_event.event_specific_data
              for r in cluster.events(run.run_id, DagsterEventType.ASSET_CHECK_EVALUATION)]
    assert [e.check_name for e in failed if not e.passed] == ["task_accuracy"]
    materialized = {r.asset_key for r in cluster.events(run.run_id, DagsterEventType.ASSET_MATERIALIZATION)}
    assert AssetKey("deployed_model") not in materialized and AssetKey("gguf_model") not in materialized
    after = ReleaseRegistry(cluster.store).champion()
    assert after.version == champion.version and after.deployed_at == champion.deployed_at
    assert cluster.double.pods[("llmops", "deployment/llmops-release-1")] is served and served.exit_code is None


def test_the_release_and_the_gateway_are_deployments_that_outlive_the_step_that_made_them(cluster, first_run):
    champion = ReleaseRegistry(cluster.store).champion()
    assert (champion.server, champion.deployment, champion.namespace) == ("kubernetes", "llmops-release-1", "llmops")
    assert set(cluster.double.deployments) == {("llmops", "llmops-release-1"), ("llmops", "llmops-gateway")}
    assert set(cluster.double.services) == set(cluster.double.deployments)
    model, gateway_pod = (cluster.double.pods[("llmops", f"deployment/{name}")] for name in ("llmops-release-1",
                                                                                           "llmops-gateway"))
    assert model.ready and gateway_pod.ready and model.exit_code is None and gateway_pod.exit_code is None
    [step] = [p for p in cluster.double.pods.values() if p.job["metadata"]["labels"].get("dagster/op") == "deployed_model"]
    assert step.exit_code == 0  # the step pod is gone; what it deployed answers
    assert champion.endpoint == f"http://127.0.0.1:{model.port}/v1"
    answer = chat_completion(f"http://127.0.0.1:{gateway_pod.port}/v1", champion.model,
                             [{"role": "user", "content": "list my tasks"}], max_tokens=8)
    assert answer is not None
