"""The asset graph as plain data: what the snapshot test pins and the UI test compares with."""

from __future__ import annotations

from typing import Any


def assets_of_every_run(defs) -> set[str]:
    """What a whole-graph run materializes: release_roles only when a promotion changes roles,
    feedback_log's days from its sensor."""
    return set(describe(defs)["assets"]) - {"release_roles", "feedback_log"}


def describe(defs) -> dict[str, Any]:
    """Keys, groups, dependencies, checks with their blocking flag, automation conditions, op
    tags, concurrency pool and retries of every asset, plus the jobs, sensors and schedules: any change to them shows."""
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        condition = node.automation_condition
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "checks": {check.name: {"blocking": graph.get_check_spec(check).blocking}
                       for check in sorted(node.check_keys, key=lambda c: c.name)},
            "automation": None if condition is None else {"label": condition.get_label(), "condition": repr(condition)},
            "op_tags": dict(node.assets_def.op.tags) if node.assets_def.is_executable else {},
            "pool": node.assets_def.op.pool if node.assets_def.is_executable else None,
            "retries": (node.assets_def.op.retry_policy.max_retries
                        if node.assets_def.is_executable and node.assets_def.op.retry_policy else 0),
        }
    return {
        "assets": assets,
        "jobs": sorted(job.name for job in defs.resolve_all_job_defs() if not job.name.startswith("__")),
        "sensors": sorted(sensor.name for sensor in defs.sensors or []),
        "schedules": sorted(schedule.name for schedule in defs.schedules or []),
    }
