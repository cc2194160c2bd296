"""`llmops`: run the pipeline as a recorded Dagster run, and manage the embedded model server."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from llmops_assets.core import releases
from llmops_assets.core.storage import write_json
from llmops_assets.deployment import servers, targets
from llmops_assets.orchestration.resources import REBUILD_TAG, ArtifactStoreResource
from llmops_assets.settings import load_settings

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
    serve = commands.add_parser("serve", help="the embedded model server")
    serve.add_argument("action", choices=["status", "stop"])
    args = parser.parse_args(argv)
    if args.config:
        os.environ["LLMOPS_CONFIG"] = str(Path(args.config).resolve())
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
    """Execute a job as a recorded run in the project's instance; print steps, gates, what is served."""
    from llmops_assets.definitions import defs

    instance = dagster_instance()
    started = time.monotonic()
    result = (definitions or defs).resolve_job_def(job_name).execute_in_process(
        run_config=run_config, instance=instance, raise_on_error=False, tags=tags)
    return report_run(instance, f"{job_name} run", result, started)


def report_run(instance, title: str, result, started: float) -> int:
    """Print the run's outcome, step times, every gate and what is served; the exit code."""
    print(f"\n{title} {result.run_id}: {'SUCCESS' if result.success else 'FAILURE'} in {time.monotonic() - started:.1f}s")
    print(format_step_times(instance, result.run_id))
    gates = gate_rows(result.get_asset_check_evaluations())
    print(format_gates(gates))
    failed = [g for g in gates if g["verdict"] == "FAIL"]  # WARN gates report without blocking
    print(served_summary())
    return 0 if result.success and not failed else 1


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
    """What is served and from what (artifact versions), and the latest verdict of every gate."""
    from llmops_assets.definitions import defs

    print(served_summary())
    status = releases.read_status(ArtifactStoreResource().home_path)
    if status:
        print("lineage: " + ", ".join(f"{k} {v}" for k, v in status.get("inputs", {}).items()))
    instance = dagster_instance()
    evaluations = []
    for key in sorted(defs.resolve_asset_graph().asset_check_keys, key=str):
        record = instance.get_latest_asset_check_evaluation_record(key)
        if record and record.event and record.event.dagster_event:
            evaluations.append(record.event.dagster_event.event_specific_data)
    print(format_gates(gate_rows(evaluations)) if evaluations else "\nno gate has run yet")
    return 0 if status and status.get("status") == "serving" else 1


def gate_rows(evaluations) -> list[dict[str, str]]:
    rows = []
    for evaluation in evaluations:
        metadata = {k: v.value for k, v in evaluation.metadata.items()}
        rows.append({
            "asset": evaluation.asset_key.to_user_string(),
            "check": evaluation.check_name,
            "value": _fmt(metadata.get("value")),
            "threshold": _fmt(metadata.get("threshold")),
            "verdict": metadata.get("verdict") or ("PASS" if evaluation.passed else "FAIL"),
        })
    return rows


def format_gates(rows: list[dict[str, str]]) -> str:
    header = {"asset": "asset", "check": "gate", "value": "value", "threshold": "threshold", "verdict": "verdict"}
    widths = {k: max(len(r[k]) for r in [header, *rows]) for k in header}
    lines = ["  ".join(r[k].ljust(widths[k]) for k in header) for r in [header, *rows]]
    return "\n".join(["", *lines])


def format_step_times(instance, run_id: str) -> str:
    lines = ["", "step wall times:"]
    for stat in instance.get_run_step_stats(run_id):
        if stat.start_time and stat.end_time:
            lines.append(f"  {stat.step_key:<20} {stat.end_time - stat.start_time:7.1f}s  {stat.status.value}")
    return "\n".join(lines)


def served_summary() -> str:
    home = ArtifactStoreResource().home_path
    status = releases.read_status(home)
    if status is None:
        return "\nnothing is served yet"
    target = targets.target_of(status, load_settings().stages.deployment, home)
    alive = status.get("status") == "serving" and target.serving(status)
    return (f"\nserved: {status['model']} version {status['version']} on {status['server']} at {status['endpoint']} "
            f"({'answering' if alive else 'NOT answering'})\nmodel: {status['model_path']}")


def serve_command(action: str) -> int:
    home = ArtifactStoreResource().home_path
    status = releases.read_status(home)
    if action == "status":
        print(json.dumps(status, indent=2) if status else "nothing is served")
        print(served_summary())
        return 0 if status and status["status"] == "serving" else 1
    if status is None or status["server"] != "llamacpp":
        print("nothing is served by the embedded server" + (f"; {status['model']} is on Ollama" if status else ""))
        return 0
    servers.stop(status["pid"])
    write_json(releases.status_path(home), status | {"status": "stopped"})
    print(f"stopped {status['model_name']} version {status['version']} (pid {status['pid']})")
    return 0


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


if __name__ == "__main__":
    sys.exit(main())
