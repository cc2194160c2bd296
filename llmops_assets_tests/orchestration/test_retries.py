"""Steps that call flaky services are retried with backoff; a refusal (bad input, a gate not
passed) fails at once, since a retry could only repeat it."""

from dagster import AssetExecutionContext, Backoff, RetryPolicy, materialize

from llmops_assets.cli import failure_reasons, root_cause
from llmops_assets.core.config import UnmetRequirement
from llmops_assets.definitions import defs
from llmops_assets.orchestration.resources import STEP_RETRY, Refused, retried_asset
from llmops_assets.training.backends import select_backend

QUICK = RetryPolicy(max_retries=2, delay=0)
SERVICE_STEPS = {"raw_examples", "base_model", "cpt_model", "hpo_study", "sft_adapter", "dpo_adapter", "eval_report",
                 "merged_model", "gguf_model", "deployed_model"}


def attempts_of(failure: Exception, failures: int):
    calls = []

    @retried_asset(policy=QUICK)
    def flaky(context: AssetExecutionContext):
        calls.append(context.retry_number)
        if len(calls) <= failures:
            raise failure
        return None

    return materialize([flaky], raise_on_error=False), calls


def test_a_transient_failure_is_retried_until_it_passes():
    result, calls = attempts_of(ConnectionError("the LLM endpoint reset the connection"), failures=2)
    assert result.success and calls == [0, 1, 2]


def test_retries_end_after_the_policy_allows():
    result, calls = attempts_of(TimeoutError("Ollama did not answer"), failures=5)
    assert not result.success and calls == [0, 1, 2]
    assert failure_reasons(result) == {"flaky": "TimeoutError: Ollama did not answer"}  # not "Exceeded max_retries"


def test_a_refusal_fails_at_once_with_its_own_message():
    for refusal in (ValueError("data.jsonl row 3: the last message must be the assistant's answer"),
                    Refused("eval_report 1234 did not pass evaluation"),
                    UnmetRequirement("training.tracking.wandb is 'online' but WANDB_API_KEY is not set")):
        result, calls = attempts_of(refusal, failures=5)
        [failure] = result.get_step_failure_events()
        assert calls == [0]
        assert root_cause(failure.step_failure_data.error).endswith(f"{type(refusal).__name__}: {refusal}")


def test_settings_this_machine_cannot_meet_are_refused_not_retried():
    """Asking for Unsloth without a GPU fails the same way on every attempt: 30 s of retries would hide it."""
    try:
        select_backend("unsloth", cuda_available=False)
    except Exception as exc:  # noqa: BLE001 -- the real error, whatever its type, through the retry policy
        result, calls = attempts_of(exc, failures=5)
    assert calls == [0] and "needs an NVIDIA GPU" in failure_reasons(result)["flaky"]


def test_the_steps_that_call_services_carry_the_retry_policy_with_backoff():
    retried = {a.op.name for a in defs.assets if getattr(a, "op", None) is not None and a.op.retry_policy == STEP_RETRY}
    assert retried == SERVICE_STEPS
    assert (STEP_RETRY.max_retries, STEP_RETRY.delay, STEP_RETRY.backoff) == (2, 10, Backoff.EXPONENTIAL)
