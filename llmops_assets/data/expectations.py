"""Great Expectations suite for curated examples: the last word before training.

Curation already quarantines bad rows; this suite re-checks the published dataset with an
independent tool (ephemeral GE context, imported only here), so a curation bug, a hand-edited
artifact or a changed tool schema cannot reach training unnoticed.
"""

from __future__ import annotations

from typing import Any

from llmops_assets.core.examples import format_problems
from llmops_assets.core.tools import ToolSchema
from llmops_assets.data.curate import primary_tool

# user -> assistant turns (a tool result answered by the assistant allowed), an optional system first.
ROLE_ORDER = r"^(?:system>)?user>assistant(?:>(?:user|tool)>assistant)*$"


def example_row(record: dict[str, Any], split: str, schema: ToolSchema) -> dict[str, Any]:
    """The columns the suite checks, of one published example (tokens come from the token counts)."""
    messages = record["messages"]
    return {
        "id": record["id"], "origin": record["origin"], "split": split,
        "role_order": ">".join(str(m.get("role")) for m in messages),
        "empty_turns": sum(1 for m in messages if not (m.get("content") or m.get("tool_calls"))),
        "tool": primary_tool(record),
        "schema_problems": "; ".join(format_problems(messages, schema)),
    }


def example_table(splits: dict[str, list[dict[str, Any]]], token_counts: dict[str, int], schema: ToolSchema):
    """One row per example with the columns the suite checks (in memory: small data and tests)."""
    import pandas as pd

    table = pd.DataFrame([example_row(record, name, schema) for name, records in splits.items() for record in records])
    return with_tokens(table, token_counts)


def with_tokens(table, token_counts: dict[str, int]):
    """The table with each example's token count (0 where curation counted none)."""
    table["tokens"] = table["id"].map(token_counts).fillna(0).astype("int64") if len(table) else []
    return table


def expectations(schema: ToolSchema, max_tokens: int | None) -> list[Any]:
    """The suite; `max_tokens` None leaves the token bounds out (no token counts to check)."""
    import great_expectations as gx

    tools = [f["function"]["name"] for f in schema.functions] + ["text"]
    token_bounds = [] if max_tokens is None else [
        gx.expectations.ExpectColumnValuesToBeBetween(column="tokens", min_value=1, max_value=max_tokens)]
    return [
        gx.expectations.ExpectColumnValuesToNotBeNull(column="id"),
        gx.expectations.ExpectColumnValuesToBeUnique(column="id"),
        gx.expectations.ExpectColumnValuesToMatchRegex(column="role_order", regex=ROLE_ORDER),
        gx.expectations.ExpectColumnValuesToBeBetween(column="empty_turns", min_value=0, max_value=0),
        *token_bounds,
        gx.expectations.ExpectColumnValuesToBeInSet(column="tool", value_set=tools),
        gx.expectations.ExpectColumnValuesToBeInSet(column="schema_problems", value_set=[""]),
    ]


def validate(table, schema: ToolSchema, max_tokens: int | None) -> list[dict[str, Any]]:
    """Each expectation's outcome: success, unexpected count and the first offending examples."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # results go to the check, not the log
    batch = (context.data_sources.add_pandas("curated").add_dataframe_asset("examples")
             .add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": table}))
    outcomes = []
    for expectation in expectations(schema, max_tokens):
        result = batch.validate(expectation, result_format={"result_format": "COMPLETE"})
        column = expectation.column
        indexes = result.result.get("unexpected_index_list") or []
        offending = table.iloc[[i for i in indexes if isinstance(i, int)][:5]] if indexes else table.iloc[0:0]
        outcomes.append({
            "expectation": f"{type(expectation).__name__}({column})",
            "success": bool(result.success),
            "unexpected_count": int(result.result.get("unexpected_count") or 0),
            "examples": [{"origin": o, column: v} for o, v in zip(offending["origin"], offending[column], strict=True)],
        })
    return outcomes
