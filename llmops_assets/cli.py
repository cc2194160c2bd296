"""`llmops`: run the pipeline as a recorded Dagster run, and manage the embedded model server."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from llmops_assets.artifacts import write_json
from llmops_assets.deployment import release, servers, targets
from llmops_assets.resources import ArtifactStoreResource
from llmops_assets.settings import load_settings

DAGSTER_YAML = "telemetry:\n  enabled: false\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llmops", description=__doc__)
    parser.add_argument("--config", help="pipeline config file (default: $LLMOPS_CONFIG or pipeline.yaml)")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="materialize the whole graph, print every gate and the endpoint")
    run.add_argument("--job", default="full_pipeline")
    rollback = commands.add_parser("rollback", help="serve an earlier release again (no retraining)")
    rollback.add_argument("--to", default="previous", help="a release version (default: the previous one)")
    serve = commands.add_parser("serve", help="the embedded model server")
    serve.add_argument("action", choices=["status", "stop"])
    args = parser.parse_args(argv)
    if args.config:
        os.environ["LLMOPS_CONFIG"] = str(Path(args.config).resolve())
    if args.command == "run":
        return run_pipeline(args.job)
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


def run_pipeline(job_name: str, run_config: dict | None = None) -> int:
    """Execute a job as a recorded run in the project's instance; print steps, gates, what is served."""
    from llmops_assets.definitions import defs

    instance = dagster_instance()
    started = time.monotonic()
    result = defs.resolve_job_def(job_name).execute_in_process(
        run_config=run_config, instance=instance, raise_on_error=False)
    print(f"\n{job_name} run {result.run_id}: {'SUCCESS' if result.success else 'FAILURE'} "
          f"in {time.monotonic() - started:.1f}s")
    print(format_step_times(instance, result.run_id))
    gates = gate_rows(result.get_asset_check_evaluations())
    print(format_gates(gates))
    failed = [g for g in gates if g["verdict"] == "FAIL"]  # WARN gates report without blocking
    print(served_summary())
    return 0 if result.success and not failed else 1


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
    status = release.read_status(home)
    if status is None:
        return "\nnothing is served yet"
    target = targets.target_of(status, load_settings().stages.deployment, home)
    alive = status.get("status") == "serving" and target.serving(status)
    return (f"\nserved: {status['model']} version {status['version']} on {status['server']} at {status['endpoint']} "
            f"({'answering' if alive else 'NOT answering'})\nmodel: {status['model_path']}")


def serve_command(action: str) -> int:
    home = ArtifactStoreResource().home_path
    status = release.read_status(home)
    if action == "status":
        print(json.dumps(status, indent=2) if status else "nothing is served")
        print(served_summary())
        return 0 if status and status["status"] == "serving" else 1
    if status is None or status["server"] != "llamacpp":
        print("nothing is served by the embedded server" + (f"; {status['model']} is on Ollama" if status else ""))
        return 0
    servers.stop(status["pid"])
    write_json(release.status_path(home), status | {"status": "stopped"})
    print(f"stopped {status['model_name']} version {status['version']} (pid {status['pid']})")
    return 0


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


if __name__ == "__main__":
    sys.exit(main())
