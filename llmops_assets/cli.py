"""`llmops`: run the pipeline as a recorded Dagster run, and manage the embedded model server."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from llmops_assets.core import releases
from llmops_assets.deployment import gateway, servers, targets
from llmops_assets.orchestration.resources import (
    REBUILD_TAG,
    ArtifactStoreResource,
    PipelineConfig,
    request_log,
    run_usage,
    step_usage,
)
from llmops_assets.settings import ConfigError, load_settings

# The project instance: telemetry off; queued runs picked up every second, one at a time (two
# trainings side by side would only slow each other down on a small machine).
DAGSTER_YAML = """telemetry:
  enabled: false
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
    max_concurrent_runs: 1
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llmops", description=__doc__)
    parser.add_argument("--config", help="pipeline config file (default: $LLMOPS_CONFIG or pipeline.yaml)")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="materialize the whole graph, print every gate and the endpoint")
    run.add_argument("--job", default="full_pipeline",
                     help="full_pipeline, retrain, ingest_data, deploy_only, rollback or checks_only")
    run.add_argument("--rebuild", action="store_true", help="rebuild artifacts even when inputs and config are unchanged")
    check = commands.add_parser("check", help="re-run the gates on the latest materializations; non-zero if one fails")
    check.add_argument("--select", nargs="*", default=[], metavar="ASSET[:CHECK]",
                       help="only these assets' checks, or single checks (default: every gate)")
    rerun = commands.add_parser("rerun", help="re-execute a failed run from its failure: only what failed and what follows")
    rerun.add_argument("--run", default="", help="the run id (default: the latest failed run)")
    commands.add_parser("status", help="what is served, its lineage, and the latest result of every gate")
    rollback = commands.add_parser("rollback", help="serve an earlier release again (no retraining)")
    rollback.add_argument("--to", default="previous", help="a release version (default: the previous one)")
    serve = commands.add_parser("serve", help="the embedded model server and the gateway in front of it")
    serve.add_argument("action", choices=["status", "stop"])
    gateway_parser = commands.add_parser("gateway", help="run the gateway in the foreground (deployments start it "
                                                         "detached by themselves)")
    # In a container the platform gives the port in $PORT (the serving Deployments set it).
    gateway_parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "0")) or None,
                                required="PORT" not in os.environ)
    gateway_parser.add_argument("--host", default="", help="listen here (default: stages.deployment.host); a pod "
                                                           "listens on 0.0.0.0 behind its ClusterIP Service")
    model_server = commands.add_parser("model-server", help="serve one gguf_model version with llama.cpp in the "
                                                            "foreground, fetched from the artifact store (a release pod)")
    model_server.add_argument("version")
    model_server.add_argument("--alias", required=True, help="the model name requests use")
    model_server.add_argument("--host", default="0.0.0.0")
    model_server.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    model_server.add_argument("--n-ctx", type=int, default=2048)
    model_server.add_argument("--n-threads", type=int, default=1)
    trace = commands.add_parser("trace", help="the release, GGUF, adapter, data and eval report behind an answer")
    trace.add_argument("request_id")
    traffic = commands.add_parser("traffic", help="replay the served release's test split and the safety suite "
                                                  "through the gateway, and score the answers")
    traffic.add_argument("--source", choices=["test", "safety", "both"], default="both")
    traffic.add_argument("--rate", type=float, default=0.0, help="requests per second (default 0: back to back)")
    traffic.add_argument("--count", type=int, default=0, help="at most this many prompts (default 0: all)")
    traffic.add_argument("--users", type=int, default=0,
                         help="send as this many simulated users in turn: each keeps its release while a canary runs "
                              "(default 0: anonymous requests, each routed on its own)")
    review_parser = commands.add_parser("review", help="the review queue in Argilla's record format: export it, "
                                                       "import the decisions (approve, reject, correct)")
    review_parser.add_argument("action", choices=["export", "import"])
    review_parser.add_argument("file", help="a JSON list of Argilla records (rg.Record.to_dict() shape)")
    review_parser.add_argument("--limit", type=int, default=500, help="export at most this many (default 500)")
    gc = commands.add_parser("gc", help="remove artifact versions that a crashed or killed publish left without a manifest")
    gc.add_argument("--min-age-hours", type=float, default=1.0,
                    help="keep younger remains: they may be a publish in progress (default: 1)")
    args = parser.parse_args(argv)
    if args.config:
        os.environ["LLMOPS_CONFIG"] = str(Path(args.config).resolve())
    try:
        load_settings()  # a config mistake is reported here, in one line, before any run starts
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "gc":
        return gc_command(args.min_age_hours * 3600)
    if args.command == "run":
        return run_pipeline(args.job, tags={REBUILD_TAG: "true"} if args.rebuild else None)
    if args.command == "check":
        return check_command(args.select)
    if args.command == "rerun":
        return rerun_command(args.run)
    if args.command == "status":
        return status_command()
    if args.command == "rollback":
        return run_pipeline("rollback", {"ops": {"deployed_model": {"config": {"rollback_to": args.to}}}})
    if args.command == "gateway":
        return gateway_command(args.port, args.host)
    if args.command == "model-server":
        return model_server_command(args.version, args.alias, args.host, args.port, args.n_ctx, args.n_threads)
    if args.command == "trace":
        return trace_command(args.request_id)
    if args.command == "traffic":
        return traffic_command(args.source, args.rate, args.count, args.users)
    if args.command == "review":
        return review_command(args.action, Path(args.file), args.limit)
    return serve_command(args.action)


def dagster_instance():
    """The project's Dagster instance: `$DAGSTER_HOME`, default `.dagster_home`, telemetry off."""
    from dagster import DagsterInstance

    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster_home").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(DAGSTER_YAML)
    return DagsterInstance.get()


def run_pipeline(job_name: str, run_config: dict | None = None, tags: dict | None = None, definitions=None) -> int:
    """Execute a job as a recorded run in the project's instance; print steps, gates, what is served.
    Assets the job's selection depends on that were never materialized are built in the same run."""
    from dagster import AssetSelection, Definitions, define_asset_job

    from llmops_assets.definitions import defs

    definitions = Definitions.merge(definitions or defs, Definitions(loggers={"console": concise_console()}))
    instance = dagster_instance()
    job = definitions.resolve_job_def(job_name)
    selected = set(job.asset_layer.selected_asset_keys)
    graph = definitions.resolve_asset_graph()
    upstream = AssetSelection.assets(*selected).upstream().resolve(graph) - selected
    # A partitioned asset (feedback_log's days) is read as far as it exists; none is fine.
    missing = sorted((k for k in upstream if not graph.get(k).is_partitioned
                      and instance.get_latest_materialization_event(k) is None), key=str)
    if missing:
        print(f"{job_name} needs {', '.join(k.to_user_string() for k in missing)}, never materialized here: "
              "building it in the same run")
        job_name = f"{job_name}_with_upstream"
        definitions = Definitions.merge(definitions, Definitions(jobs=[define_asset_job(
            job_name, selection=AssetSelection.assets(*selected, *missing))]))
        job = definitions.resolve_job_def(job_name)
    started = time.monotonic()
    run_config = {**(run_config or {}), "loggers": {"console": {"config": {"log_level": "INFO"}}}}
    result = job.execute_in_process(run_config=run_config, instance=instance, raise_on_error=False, tags=tags)
    return report_run(instance, f"{job_name} run", result, started)


class _FirstLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        record.msg, record.args = record.getMessage().split("\n", 1)[0], ()
        return super().format(record)


def concise_console():
    """The run's events on the console, one line each: a failed step shows its error's first line;
    its full stack trace stays in the run's event log (the Dagster UI shows it)."""
    from dagster import Field, logger

    @logger(config_schema={"log_level": Field(str, default_value="INFO")},
            description="One line per event; stack traces stay in the run's event log.")
    def one_line_console(init_context):
        console = logging.getLogger("llmops.run")
        console.setLevel(init_context.logger_config["log_level"])
        console.propagate = False
        if not console.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(_FirstLine("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
            console.addHandler(handler)
        return console

    return one_line_console


def report_run(instance, title: str, result, started: float) -> int:
    """Print the run's outcome, step times, every gate and what is served; the exit code."""
    print(f"\n{title} {result.run_id}: {'SUCCESS' if result.success else 'FAILURE'} in {time.monotonic() - started:.1f}s")
    for step, reason in failure_reasons(result).items():
        print(f"FAILED {step}: {reason}")
    if not result.success:
        print(f"(the full trace is in run {result.run_id}'s event log: `make dev`, then Runs in the Dagster UI)")
    print(format_step_usage(instance, result.run_id))
    gates = gate_rows(result.get_asset_check_evaluations())
    print(format_gates(gates))
    failed = [g for g in gates if g["verdict"] == "FAIL"]  # WARN gates report without blocking
    print(served_summary())
    return 0 if result.success and not failed else 1


def failure_reasons(result) -> dict[str, str]:
    """Step -> why it failed. A step that used up its retries reports what its last attempt
    raised, not Dagster's "Exceeded max_retries"."""
    last_attempt = {event.step_key: event.event_specific_data.error for event in result.all_events
                    if event.is_step_up_for_retry and event.event_specific_data.error is not None}
    return {failure.step_key: root_cause(last_attempt.get(failure.step_key, failure.step_failure_data.error)
                                         if failure.step_failure_data.error.message.startswith("Exceeded max_retries")
                                         else failure.step_failure_data.error)
            for failure in result.get_step_failure_events()}


def root_cause(error) -> str:
    """The first error below Dagster's own wrappers (the `Failure` a refusal is raised as, the
    retry request a retried failure is wrapped in), first line: what the step raised, which names
    what the user must fix (not the low-level error it was raised from)."""
    while error.cause is not None and ((error.cls_name or "").startswith("Dagster")
                                       or error.cls_name in ("Failure", "RetryRequestedFromPolicy")):
        error = error.cause
    return error.message.strip().splitlines()[0]


def rerun_command(run_id: str) -> int:
    """Dagster's re-execution from failure: steps that succeeded keep their results."""
    from dagster import DagsterRunStatus, ReexecutionOptions, RunsFilter, execute_job
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    instance = dagster_instance()
    if not run_id:
        failed = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.FAILURE]), limit=1)
        if not failed:
            print("no failed run to re-execute")
            return 1
        run_id = failed[0].run_id
    parent = instance.get_run_by_id(run_id)
    if parent is None:
        print(f"no run {run_id} in {os.environ['DAGSTER_HOME']}")
        return 1
    job = ReconstructableRepository.for_module("llmops_assets.definitions", "defs").get_reconstructable_job(parent.job_name)
    started = time.monotonic()
    with execute_job(job, instance, reexecution_options=ReexecutionOptions.from_failure(run_id, instance),
                     raise_on_error=False) as result:
        return report_run(instance, f"{parent.job_name} run {run_id} re-executed from failure as", result, started)


def check_command(select: list[str]) -> int:
    """The gates only, against what is materialized now: for CI, and after changing a threshold."""
    from dagster import AssetCheckKey, AssetKey, AssetSelection, Definitions, define_asset_job

    from llmops_assets.definitions import defs

    if not select:
        return run_pipeline("checks_only")
    selection = AssetSelection.checks()
    for item in select:
        asset, _, check = item.partition(":")
        selection |= (AssetSelection.checks(AssetCheckKey(AssetKey(asset), check)) if check
                      else AssetSelection.checks_for_assets(asset))
    job = define_asset_job("selected_checks", selection=selection)
    return run_pipeline("selected_checks", definitions=Definitions.merge(defs, Definitions(jobs=[job])))


def status_command() -> int:
    """What is served and from what (artifact versions), every live release, and the latest
    verdict of every gate."""
    from dagster import AssetKey

    from llmops_assets.definitions import defs

    print(served_summary())
    registry = ArtifactStoreResource().registry
    champion = registry.champion()
    if champion:
        print("lineage: " + ", ".join(f"{k} {v}" for k, v in champion.inputs.items()))
    for live in sorted(registry.live(), key=lambda r: r.release_number):
        print(f"release {live.release_number}: {live.version} {live.role} traffic {live.traffic_weight:.0%} "
              f"on {live.server} at {live.endpoint}")
    instance = dagster_instance()
    if registry.challenger() is not None:
        latest = instance.get_latest_materialization_event(AssetKey("canary_analysis"))
        metadata = latest.asset_materialization.metadata if latest else {}
        print("canary analysis: " + (f"{metadata['decision'].value} ({metadata['reason'].value}); more requests "
                                     f"needed: {metadata['more_requests'].value}" if "more_requests" in metadata
                                     else "not run yet (the canary sensor runs it, or: llmops run --job canary_review)"))
    evaluations = []
    for key in sorted(defs.resolve_asset_graph().asset_check_keys, key=str):
        record = instance.get_latest_asset_check_evaluation_record(key)
        if record and record.event and record.event.dagster_event:
            evaluations.append(record.event.dagster_event.event_specific_data)
    print(format_gates(gate_rows(evaluations)) if evaluations else "\nno gate has run yet")
    latest = instance.get_runs(limit=1)
    if latest:
        print(f"\nlatest run: {latest[0].job_name} {latest[0].run_id} {latest[0].status.value}"
              + format_step_usage(instance, latest[0].run_id))
    return 0 if champion else 1


def gate_rows(evaluations) -> list[dict[str, str]]:
    """One row per gate; `note` says when this configuration relaxed the gate until it cannot fail."""
    relaxed = load_settings().gates_that_cannot_fail()
    rows = []
    for evaluation in evaluations:
        metadata = {k: v.value for k, v in evaluation.metadata.items()}
        asset = evaluation.asset_key.to_user_string()
        rows.append({
            "asset": asset,
            "check": evaluation.check_name,
            "value": _fmt(metadata.get("value")),
            "bound": _fmt(metadata.get("bound")),
            "threshold": _fmt(metadata.get("threshold")),
            "verdict": metadata.get("verdict") or ("PASS" if evaluation.passed else "FAIL"),
            "note": relaxed.get(f"{asset}:{evaluation.check_name}", ""),
        })
    return rows


def format_gates(rows: list[dict[str, str]]) -> str:
    header = {"asset": "asset", "check": "gate", "value": "value", "bound": "bound", "threshold": "threshold",
              "verdict": "verdict", "note": ""}
    widths = {k: max(len(r[k]) for r in [header, *rows]) for k in header}
    lines = ["  ".join(r[k].ljust(widths[k]) for k in header).rstrip() for r in [header, *rows]]
    relaxed = [r for r in rows if r["note"]]
    if relaxed:
        lines.append(f"{len(relaxed)} of {len(rows)} gates cannot fail with this configuration (see note): "
                     f"a pass there is no evidence.")
    return "\n".join(["", *lines])


def format_step_usage(instance, run_id: str) -> str:
    """Each step's wall time and status, with the CPU and GPU seconds and cost its materialization
    recorded; the run's total against its budget (constraints)."""
    limits = load_settings().constraints
    recorded = step_usage(instance, run_id)
    lines = ["", f"step usage (wall, CPU and GPU seconds; cost in {limits.currency} at constraints.rates):"]
    for stat in instance.get_run_step_stats(run_id):
        if stat.start_time and stat.end_time:
            usage = recorded.get(stat.step_key, {})
            measured = (f"  CPU {usage['cpu_seconds']:7.1f}s  GPU {usage['gpu_seconds']:6.1f}s  {usage['cost']:.4f}"
                        if "cost" in usage else "")
            lines.append(f"  {stat.step_key:<20} {stat.end_time - stat.start_time:7.1f}s{measured}  {stat.status.value}")
    total, stats = run_usage(instance, run_id, recorded), instance.get_run_stats(run_id)
    wall = (stats.end_time or time.time()) - stats.start_time if stats.start_time else 0.0
    budget = ", ".join(f"{name} {value}" for name, value in (("max_time_hours", limits.max_time_hours),
                                                              ("max_cost", limits.max_cost)) if value is not None)
    lines.append(f"  {'run total':<20} {wall:7.1f}s  CPU {total['cpu_seconds']:7.1f}s  GPU {total['gpu_seconds']:6.1f}s  "
                 f"{total['cost']:.4f} {limits.currency}  (budget: {budget or 'none set'})")
    return "\n".join(lines)


def served_summary() -> str:
    resource = ArtifactStoreResource()
    champion = resource.registry.champion()
    if champion is None:
        stopped = releases.read_status(resource.home_path)
        return "\nnothing is served" + (f" (release {stopped['version']} was stopped)" if stopped else " yet")
    status = champion.view()
    alive = targets.target_of(status, load_settings().stages.deployment, resource.home_path).serving(status)
    front = gateway.running(resource.home_path)
    return (f"\nserved: {champion.model} version {champion.version} on {champion.server} at {champion.endpoint} "
            f"({'answering' if alive else 'NOT answering'})\nmodel: {champion.model_path}\n"
            + (f"clients call the gateway: {front['endpoint']}" if front else "the gateway is not running"))


def serve_command(action: str) -> int:
    resource = ArtifactStoreResource()
    registry = resource.registry
    champion = registry.champion()
    if action == "status":
        print(json.dumps(champion.view(), indent=2) if champion else "nothing is served")
        print(served_summary())
        return 0 if champion else 1
    if gateway.stop(resource.home_path):
        print("stopped the gateway")
    if champion is None or champion.server != "llamacpp":
        print("nothing is served by the embedded server" + (f"; {champion.model} is on Ollama" if champion else ""))
        return 0
    if not servers.stop(champion.pid, champion.pid_started_at):
        print(f"pid {champion.pid} is no longer release {champion.version}'s server: nothing signalled")
    registry.mark_stopped(champion.release_number, "llmops serve stop")
    registry.write_views(resource.home_path)
    print(f"stopped {champion.model_name} version {champion.version} (pid {champion.pid})")
    return 0


def gateway_command(port: int, host: str = "") -> int:
    import uvicorn

    settings, resource = load_settings(), ArtifactStoreResource()
    deployment = settings.stages.deployment
    app = gateway.create_app(resource.home_path, resource.store.url, deployment,
                             settings.domain.system_prompt if deployment.gateway.add_system_prompt else "",
                             settings.domain.tools_file)
    uvicorn.run(app, host=host or deployment.host, port=port, log_level="warning")
    return 0


def model_server_command(version: str, alias: str, host: str, port: int, n_ctx: int, n_threads: int) -> int:
    """A release pod's process: the GGUF of `version` from the artifact store into this pod's
    cache, then llama.cpp's server in its place (the pod's one process)."""
    gguf = ArtifactStoreResource().store.get("gguf_model", version).path / "model.gguf"
    command = servers.llamacpp_command(gguf, alias, host, port, n_threads, n_ctx)
    os.execv(command[0], command)
    return 1  # not reached: execv replaces this process


def review_command(action: str, path: Path, limit: int) -> int:
    """Export the review queue as Argilla records, or import reviewed records as decisions; a
    record that cannot be imported is listed with why, and the others are still stored."""
    from llmops_assets.core.tools import ToolSchema
    from llmops_assets.deployment import review

    resource = ArtifactStoreResource()
    log = request_log(PipelineConfig(), resource)
    if action == "export":
        records = review.to_argilla(review.queue_entries(log, resource.registry.releases(), limit))
        path.write_text(json.dumps(records, indent=1))
        print(f"{len(records)} records waiting for review written to {path} (Argilla: text fields prompt, answer, "
              f"reasons; questions decision [approve, reject, correct], correction, comment)")
        return 0
    try:
        records = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        return 2
    if not isinstance(records, list):
        print(f"error: {path}: expected a JSON list of Argilla records", file=sys.stderr)
        return 2
    decisions, skipped = review.from_argilla(records)
    schema = ToolSchema.from_file(load_settings().domain.tools_file)
    stored = 0
    for decision in decisions:
        try:
            review.store_review(log, decision, schema, "review:argilla")
            stored += 1
        except (ValueError, LookupError) as exc:
            skipped.append({"record": f"id {decision['request_id']!r}", "reason": str(exc.args[0])})
    refused = [item for item in skipped if item["reason"] != review.NO_DECISION]
    for item in skipped:
        print(f"skipped {item['record']}: {item['reason']}")
    print(f"{stored} review decisions stored from {path}; {len(skipped) - len(refused)} records not decided yet, "
          f"{len(refused)} refused")
    return 1 if refused else 0


def trace_command(request_id: str) -> int:
    """From a request id to what produced its answer: the release and, through the artifacts'
    manifests, the GGUF, adapter, training data and eval report."""
    resource = ArtifactStoreResource()
    log = request_log(PipelineConfig(), resource)
    entry = log.get(request_id)
    if entry is None:
        print(f"no request {request_id} in the request log ({log.url})")
        return 1
    release = resource.registry.releases().get(entry["release_number"])
    print(f"request {request_id} at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(entry['received_at']))}: "
          f"status {entry['status']}, {entry['latency_ms']:.0f} ms, answered by release {entry['release_number']} "
          f"({entry['role']}) version {entry['release_version']}")
    print(f"answer: {entry['answer']}")
    if release is None:
        print("that release is not in the registry any more")
        return 1
    store = resource.store
    for line in lineage(store, "gguf_model", release.version):
        print(line)
    for line in feedback_trace(store, resource.registry, log.feedback(request_id)):
        print(line)
    return 0


def feedback_trace(store, registry, feedback: list[dict]) -> list[str]:
    """Where each feedback item on a request went: the preference pairs it became (or why it was
    quarantined), the DPO adapters trained on them, the releases serving those."""
    from llmops_assets.core.storage import read_jsonl

    lines, pair_sets = [], store.versions("preference_pairs") if feedback else []
    for item in feedback:
        said = ", ".join(f"{k} {item[k]!r}" for k in ("rating", "correction", "signal", "comment") if item[k] is not None)
        lines.append(f"feedback {item['feedback_id']}: {said}")
        for pairs in pair_sets:
            if any(p["feedback_id"] == item["feedback_id"] for p in read_jsonl(pairs.path / "pairs.jsonl")):
                lines.append(f"  a preference pair in preference_pairs {pairs.version}")
                lines += [f"    trained dpo_adapter {a.version}" for a in store.versions("dpo_adapter")
                          if a.manifest["inputs"].get("preference_pairs") == pairs.version]
            quarantined = [q for q in read_jsonl(pairs.path / "quarantine.jsonl")
                           if q["raw"].get("feedback_id") == item["feedback_id"]]
            lines += [f"  quarantined in preference_pairs {pairs.version}: {q['reason']}" for q in quarantined]
    trained = {line.split()[-1] for line in lines if "trained dpo_adapter" in line}
    for release in registry.releases().values():
        evaluated = release.inputs.get("eval_report")
        if evaluated and store.exists("eval_report", evaluated) and \
                store.get("eval_report", evaluated).manifest["inputs"].get("dpo_adapter") in trained:
            lines.append(f"  served as release {release.release_number} ({release.role}) version {release.version}")
    return lines


def traffic_command(source: str, rate: float, count: int, users: int = 0) -> int:
    """Bare client calls (no system prompt: the gateway adds it) of the champion's own test split
    and of the safety suite; prints what came back and how the answers score."""
    from llmops_assets.core.scoring import expected_call, score
    from llmops_assets.core.storage import read_jsonl
    from llmops_assets.core.tools import ToolSchema
    from llmops_assets.deployment import traffic
    from llmops_assets.evaluation.safety import case_passed, load_suite

    settings, resource = load_settings(), ArtifactStoreResource()
    front, champion = gateway.running(resource.home_path), resource.registry.champion()
    if front is None or champion is None:
        print("nothing is served through the gateway: deploy first (llmops run)")
        return 1
    schema = ToolSchema.from_file(settings.domain.tools_file)
    test = read_jsonl(resource.store.get("curated_dataset", champion.inputs["curated_dataset"]).path / "test.jsonl") \
        if source in ("test", "both") else []
    suite = load_suite(settings.stages.evaluation.safety_suite) if source in ("safety", "both") else []
    prompts = [[m for m in row["messages"][:-1] if m["role"] != "system"] for row in test]
    prompts += [[{"role": "user", "content": case["request"]}] for case in suite]
    if count:
        prompts = prompts[:count]
    results = traffic.replay(front["endpoint"], prompts, rate, settings.stages.evaluation.max_new_tokens,
                             settings.stages.deployment.api_key(), print, users)
    print(json.dumps(traffic.summary(results)))
    answers = [r["answer"] or "" for r in results]
    scored = answers[:len(test)]
    if scored:
        accuracy = score([expected_call(row["messages"]) for row in test[:len(scored)]], scored, schema)["task_accuracy"]
        print(f"test split: {accuracy:.3f} exact match on {len(scored)} prompts through the gateway")
    cases = suite[:max(0, len(answers) - len(test))]
    if cases:
        passed = sum(case_passed(c, a, schema) for c, a in zip(cases, answers[len(test):], strict=True))
        print(f"safety suite: {passed}/{len(cases)} through the gateway")
    return 0 if all(r["status"] == 200 for r in results) else 1


def lineage(store, asset: str, version: str, depth: int = 0) -> list[str]:
    """`asset@version` and, indented, everything its manifest says it was built from."""
    try:
        manifest = store.get(asset, version).manifest
    except FileNotFoundError:
        return [f"{'  ' * depth}{asset} {version} (gone from {store.url})"]
    lines = [f"{'  ' * depth}{asset} {version}  {store.url_of(asset, version)}"]
    for name, upstream in sorted(manifest.get("inputs", {}).items()):
        upstream_asset = name.split(":")[0]  # a partition's input is named `asset:partition`
        if store.exists(upstream_asset, upstream):
            if upstream_asset != name:
                lines.append(f"{'  ' * (depth + 1)}{name.split(':', 1)[1]}:")
            lines += lineage(store, upstream_asset, upstream, depth + 1)
        else:
            lines.append(f"{'  ' * (depth + 1)}{name} {upstream}")
    return lines


def gc_command(min_age_s: float) -> int:
    """Remove version folders without a manifest from the artifact store."""
    store = ArtifactStoreResource().store
    removed = store.gc(min_age_s)
    for url in removed:
        print(f"removed {url} (no manifest: a publish that never finished)")
    print(f"{len(removed)} incomplete versions removed from {store.url}")
    return 0


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


if __name__ == "__main__":
    sys.exit(main())
