"""Dagster resources: the pipeline settings and the artifact store.

Assets and checks find their inputs through the artifact version recorded in the upstream asset's
materialization that their own run depends on, never through a pickled value or a hard-coded path.
"""

from __future__ import annotations

import base64
import functools
import os
import time
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    AssetRecordsFilter,
    Backoff,
    ConfigurableResource,
    DagsterEventType,
    DataVersion,
    Failure,
    Jitter,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    asset,
)

from llmops_assets.core.config import UnmetRequirement
from llmops_assets.core.costs import BudgetExceeded, Meter, RunBudget, Usage
from llmops_assets.core.releases import ReleaseRegistry
from llmops_assets.core.request_log import RequestLog, default_url
from llmops_assets.core.storage import Artifact, ArtifactStore, ArtifactWriter
from llmops_assets.core.verdicts import Verdict
from llmops_assets.deployment.release import DeploymentRejected
from llmops_assets.settings import PipelineSettings, load_settings


class Refused(RuntimeError):
    """A step that says no (a candidate that did not pass its gates, a release that cannot be
    served again): deterministic, so never retried."""


# What a retry could only repeat: bad input or settings (ValueError), settings this environment
# cannot meet (UnmetRequirement), and refusals.
REFUSALS = (ValueError, UnmetRequirement, BudgetExceeded, Refused, DeploymentRejected)

# The concurrency pool of the steps that train (they request GPUs on Kubernetes): an instance
# limit on it (`dagster instance concurrency set gpu N`) queues them instead of piling them up.
GPU_POOL = "gpu"
# What every metered step records in its materialization's metadata (the UI plots them over time).
USAGE_METADATA = ("wall_seconds", "cpu_seconds", "gpu_seconds", "cost")

# Steps that call services which fail now and then (an LLM endpoint, Ollama, the object store) or
# hold a pod long enough to lose it (training on preemptible GPU nodes; a pod that dies fails its
# step's health check): two more tries, about 10 s and 20 s later. Re-running them is idempotent:
# artifacts are content-addressed and published atomically, training resumes from its last
# checkpoint, and a release is switched to only after its probes pass.
STEP_RETRY = RetryPolicy(max_retries=2, delay=10, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)


def retried_asset(policy: RetryPolicy = STEP_RETRY, **asset_kwargs):
    """`metered_asset` retried under `policy`, except that a refusal fails the step at once
    (`Failure` with `allow_retries=False`, the refusal as its cause and message)."""
    return metered_asset(retry_policy=policy, **asset_kwargs)


def metered_asset(**asset_kwargs):
    """`@asset` that refuses to start once its run is over budget and records its usage (wall,
    CPU and GPU seconds, cost at `constraints.rates`) in its metadata. A refusal fails the step
    without a retry."""
    gpu_step = asset_kwargs.get("pool") == GPU_POOL

    def decorate(compute):
        @functools.wraps(compute)
        def step(context, *args, **kwargs):
            settings = kwargs["pipeline"].settings if "pipeline" in kwargs else load_settings()
            try:
                budget = run_budget(context, settings, gpu_step)
                if over := budget.overrun(time.time(), cores_busy=0):
                    raise BudgetExceeded(f"{context.asset_key.to_user_string()} not started: {over}")
                meter = Meter(budget.gpus)
                result = compute(context, *args, **kwargs)
                context.add_asset_metadata(usage_metadata(meter.usage(), settings))
                return result
            except REFUSALS as exc:
                raise Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=False) from exc

        return asset(**asset_kwargs)(step)

    return decorate


def usage_metadata(usage: Usage, settings: PipelineSettings) -> dict[str, float]:
    values = (usage.wall_s, usage.cpu_s, usage.gpu_s, usage.cost(settings.constraints.rates))
    return dict(zip(USAGE_METADATA, values, strict=True))


def step_usage(instance, run_id: str) -> dict[str, dict[str, float]]:
    """Step key -> the usage its materialization recorded, for the run's metered steps."""
    recorded = {}
    for record in instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records:
        metadata = record.event_log_entry.asset_materialization.metadata
        if all(key in metadata for key in USAGE_METADATA):
            recorded[record.event_log_entry.step_key] = {key: float(metadata[key].value) for key in USAGE_METADATA}
    return recorded


def run_usage(instance, run_id: str, steps: dict[str, dict[str, float]] | None = None) -> dict[str, float]:
    """The run's usage so far: the sum of what its materialized steps recorded (`steps`, when read already)."""
    steps = step_usage(instance, run_id) if steps is None else steps
    return {key: sum(usage[key] for usage in steps.values()) for key in USAGE_METADATA}


def run_budget(context, settings: PipelineSettings, gpu_step: bool = False) -> RunBudget:
    """The run's budget as a step starting now sees it: the run's start and its steps' cost so far."""
    run_id = context.run.run_id
    stats = context.instance.get_run_stats(run_id)
    return RunBudget(settings.constraints, run_started=stats.start_time or time.time(),
                     spent_cost=run_usage(context.instance, run_id)["cost"], step_started=time.time(),
                     gpus=gpus_held(settings) if gpu_step else 0)


def gpus_held(settings: PipelineSettings) -> int:
    """GPUs a training step holds: its pod's on Kubernetes, else one per training process when CUDA is here."""
    if os.environ.get("LLMOPS_ENVIRONMENT") == "kubernetes":
        return settings.stages.training.kubernetes.gpus
    import torch

    return settings.stages.training.nproc_per_node if torch.cuda.is_available() else 0


# A run tagged with this rebuilds every artifact even when its inputs and config are unchanged
# (after changing stage code, say); without it such a rerun reuses what it built before.
REBUILD_TAG = "llmops/rebuild"


class PipelineConfig(ConfigurableResource):
    """The pipeline config file; empty means `$LLMOPS_CONFIG` or the project's pipeline.yaml."""

    config_path: str = ""

    @cached_property
    def settings(self) -> PipelineSettings:
        return load_settings(self.config_path or None)


class ArtifactStoreResource(ConfigurableResource):
    """Where artifacts live. `home` (empty: `$LLMOPS_HOME` or `.llmops`) holds what is local to
    this machine (the read cache, scratch, tracking runs); `url` (empty: `$LLMOPS_ARTIFACTS` or
    `<home>/artifacts`) is the artifact root: a folder or `s3://bucket/prefix`."""

    home: str = ""
    url: str = ""
    # Each process its own read cache (<home>/cache/<pid>), as each pod has on Kubernetes: the
    # multiprocess environment sets it, so a step that relies on another step's local files
    # instead of the artifact store fails on one machine too.
    private_cache: bool = False

    @property
    def home_path(self) -> Path:
        return Path(self.home or os.environ.get("LLMOPS_HOME", ".llmops")).resolve()

    @property
    def store(self) -> ArtifactStore:
        url = self.url or os.environ.get("LLMOPS_ARTIFACTS") or str(self.home_path / "artifacts")
        cache = self.home_path / "cache"
        return ArtifactStore(url, cache_dir=cache / str(os.getpid()) if self.private_cache else cache)

    @property
    def registry(self) -> ReleaseRegistry:
        """The release registry, kept in the artifact store."""
        return ReleaseRegistry(self.store)

    def upstream(self, context, asset: str) -> Artifact:
        """The version of `asset` this run depends on: the one this run materialized, else the
        latest one materialized before this run was created. Concurrent runs never mix versions."""
        key, instance = AssetKey(asset), context.instance
        own = [r for r in instance.get_records_for_run(context.run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION).records
               if r.asset_key == key]
        if own:
            record = own[-1]
        else:
            created = instance.get_run_record_by_id(context.run.run_id).create_timestamp.timestamp()
            before = instance.fetch_materializations(AssetRecordsFilter(asset_key=key, before_timestamp=created), limit=1)
            if not before.records:
                raise Refused(f"{asset} has never been materialized; materialize it first")
            record = before.records[0]
        version = record.asset_materialization.metadata.get("version")
        if version is None:
            raise Refused(f"{asset}'s materialization in run {record.run_id} records no artifact version")
        return self.store.get(asset, version.value)

    def upstream_partitions(self, context, asset: str) -> dict[str, Artifact]:
        """{partition key: version} of a partitioned `asset` this run depends on: for each
        partition, the version this run materialized, else the latest one before the run was created."""
        key, instance = AssetKey(asset), context.instance
        created = instance.get_run_record_by_id(context.run.run_id).create_timestamp.timestamp()
        records, cursor = [], None
        while True:  # newest first, page by page
            page = instance.fetch_materializations(AssetRecordsFilter(asset_key=key, before_timestamp=created),
                                                   limit=1000, cursor=cursor)
            records += page.records
            if not page.has_more:
                break
            cursor = page.cursor
        own = [r for r in instance.get_records_for_run(context.run.run_id,
                                                       of_type=DagsterEventType.ASSET_MATERIALIZATION).records
               if r.asset_key == key]
        latest: dict[str, str] = {}
        for record in [*reversed(records), *own]:  # oldest first: a later one replaces an earlier one
            latest[record.partition_key] = record.asset_materialization.metadata["version"].value
        return {partition: self.store.get(asset, version) for partition, version in sorted(latest.items())}

    def build_or_reuse(self, context, asset: str, inputs: dict[str, str], config: dict,
                       build: Callable[[ArtifactWriter], None], equivalent: Artifact | None = None) -> Artifact:
        """The artifact built before from the same inputs and config (or `equivalent`, one the
        caller knows stands for them), unless the run asks to rebuild; else `build` fills a new one."""
        if context.run.tags.get(REBUILD_TAG) != "true":
            found = equivalent or self.store.find(asset, inputs, config)
            if found is not None:
                context.log.info(f"{asset}: inputs and config unchanged since version {found.version}, reusing it "
                                 f"(run tag {REBUILD_TAG}=true rebuilds)")
                return found
        with self.store.write(asset, inputs=inputs, config=config) as out:
            build(out)
        return self.store.get(asset, out.version)


def request_log(pipeline: PipelineConfig, artifacts: ArtifactStoreResource) -> RequestLog:
    """The gateway's request log (and feedback): the configured URL, else SQLite under home."""
    return RequestLog(pipeline.settings.stages.deployment.gateway.request_log or default_url(artifacts.home_path))


# Metadata key of the input files' fingerprints an asset read (raw_examples, cpt_model, dpo_adapter):
# the sensors compare them with the files as they are now.
SOURCE_FILES = "source_files"


def artifact_result(artifact: Artifact, **metadata) -> MaterializeResult:
    """The materialization of a published artifact: its version and URL, plus `metadata`."""
    return MaterializeResult(
        metadata={"version": artifact.version, "artifact": artifact.url, **metadata},
        data_version=DataVersion(artifact.version),
    )


def gate_result(name: str, value: float, threshold: float, passed: bool, bound: float | None = None,
                check: AssetCheckKey | None = None, **metadata) -> AssetCheckResult:
    """A blocking gate's check result with value, threshold, bound and verdict in its metadata
    (`check`: which one, where one op evaluates several)."""
    return verdict_result(Verdict(name, float(value), float(threshold), bool(passed), bound=bound), check, **metadata)


def verdict_result(verdict: Verdict, check: AssetCheckKey | None = None, **metadata) -> AssetCheckResult:
    """A failed blocking verdict fails its check (ERROR: what follows does not run). A verdict
    configured not to block passes its check, with verdict WARN in the metadata: to Dagster's
    automation a failed check holds back what follows whatever its severity, so only a check
    that passes lets the flow go on. The stage's non-blocking `*_warnings` check reports it."""
    return AssetCheckResult(
        passed=verdict.passed or not verdict.blocking,
        severity=AssetCheckSeverity.ERROR,
        **({"asset_key": check.asset_key, "check_name": check.name} if check else {}),
        metadata={"gate": verdict.gate, "value": verdict.value, "threshold": verdict.threshold,
                  **({"bound": verdict.bound} if verdict.bound is not None else {}),
                  "verdict": verdict.label, **({"note": verdict.note} if verdict.note else {}), **metadata},
    )


def warnings_result(verdicts: list[Verdict]) -> AssetCheckResult:
    """The non-blocking check that fails, as a WARN, when gates configured to warn failed."""
    warned = [v for v in verdicts if not v.passed and not v.blocking]
    return AssetCheckResult(
        passed=not warned, severity=AssetCheckSeverity.WARN,
        metadata={"gate": "warnings", "value": len(warned), "threshold": 0, "verdict": "WARN" if warned else "PASS",
                  "warnings": MetadataValue.json([{"gate": v.gate, "value": v.value, "threshold": v.threshold,
                                                   "note": v.note} for v in warned])},
    )


def markdown_image(path: Path) -> MetadataValue:
    encoded = base64.b64encode(Path(path).read_bytes()).decode()
    return MetadataValue.md(f"![{Path(path).stem}](data:image/png;base64,{encoded})")
