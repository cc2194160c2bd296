"""When a stage re-materializes on its own (declarative automation); the sensors that evaluate
it are in `automation.py`."""

from dagster import AssetSelection, AutomationCondition

# Downstream stages: re-materialize when an upstream asset was updated (or will be in the same
# run), never while one is missing or running, and only once its blocking gates passed. A fresh
# instance does not train on its own: new data (or a user) starts the flow.
AFTER_UPSTREAM_GATES = (
    AutomationCondition.any_deps_updated().since_last_handled()
    & ~AutomationCondition.any_deps_missing()
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
    & AutomationCondition.all_deps_blocking_checks_passed()
).with_label("upstream updated and its gates passed")

# The same, for what reads the day partitions of feedback_log: a day without feedback is never
# materialized, so missing days must not hold it back.
AFTER_FEEDBACK_DAYS = (
    AutomationCondition.any_deps_updated().since_last_handled()
    & ~AutomationCondition.any_deps_missing().ignore(AssetSelection.assets("feedback_log"))
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
    & AutomationCondition.all_deps_blocking_checks_passed()
).with_label("upstream updated (any feedback day) and its gates passed")
