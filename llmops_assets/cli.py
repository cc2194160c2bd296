"""`llmops`: run the pipeline as a recorded Dagster run, and manage the embedded model server."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

DAGSTER_YAML = "telemetry:\n  enabled: false\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="llmops", description=__doc__)
    parser.add_argument("--config", help="pipeline config file (default: $LLMOPS_CONFIG or pipeline.yaml)")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="materialize the whole graph, print every gate and the endpoint")
    run.add_argument("--job", default="full_pipeline")
    serve = commands.add_parser("serve", help="the embedded model server")
    serve.add_argument("action", choices=["status", "stop"])
    args = parser.parse_args(argv)
    if args.config:
        os.environ["LLMOPS_CONFIG"] = str(Path(args.config).resolve())
    if args.command == "run":
        return run_pipeline(args.job)
    return serve_command(args.action)


def dagster_instance():
    """The project's Dagster instance: `$DAGSTER_HOME`, default `.dagster_home`, telemetry off."""
    from dagster import DagsterInstance

    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster_home").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(DAGSTER_YAML)
    return DagsterInstance.get()


def run_pipeline(job_name: str) -> int:
    from llmops_assets.definitions import defs

    instance = dagster_instance()
    result = defs.resolve_job_def(job_name).execute_in_process(instance=instance, raise_on_error=False)
    print(f"\nrun {result.run_id}: {'SUCCESS' if result.success else 'FAILURE'}")
    print(format_step_times(instance, result.run_id))
    gates = gate_rows(result.get_asset_check_evaluations())
    print(format_gates(gates))
    failed = [g for g in gates if g["verdict"] != "PASS"]
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
            "verdict": "PASS" if evaluation.passed else "FAIL",
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
    from llmops_assets.deployment import release, servers
    from llmops_assets.resources import ArtifactStoreResource

    status = release.read_status(ArtifactStoreResource().home_path)
    if status is None:
        return "\nnothing is served yet"
    alive = status.get("status") == "serving" and servers.is_alive(status["pid"])
    return (f"\nserved: {status['model_name']} version {status['version']} at {status['endpoint']} "
            f"(pid {status['pid']}, {'running' if alive else 'NOT running'})\nmodel: {status['model_path']}")


def serve_command(action: str) -> int:
    from llmops_assets.artifacts import write_json
    from llmops_assets.deployment import release, servers
    from llmops_assets.resources import ArtifactStoreResource

    home = ArtifactStoreResource().home_path
    status = release.read_status(home)
    if action == "status":
        print(json.dumps(status, indent=2) if status else "nothing is served")
        print(served_summary())
        return 0 if status and servers.is_alive(status["pid"]) else 1
    if status is None:
        print("nothing is served")
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
