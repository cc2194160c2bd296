import json

import pytest

from llmops_assets.core.chat import model_messages, parse_tool_call, tool_calls_of
from llmops_assets.core.tools import ToolCall, ToolSchema
from llmops_assets.settings import load_settings


@pytest.fixture(scope="module")
def schema():
    return ToolSchema.from_file(load_settings().domain.tools_file)


def test_valid_call_has_no_problems(schema):
    assert schema.problems(ToolCall("add_task", {"title": "Buy milk"})) == []
    assert schema.problems(ToolCall("list_tasks", {})) == []


@pytest.mark.parametrize("call, expected", [
    (ToolCall("drop_table", {}), "unknown tool 'drop_table'"),
    (ToolCall("add_task", {}), "missing required argument 'title'"),
    (ToolCall("complete_task", {"task_id": "seven"}), "should be integer"),
    (ToolCall("complete_task", {"task_id": True}), "should be integer"),
    (ToolCall("list_tasks", {"status": "archived"}), "must be one of"),
    (ToolCall("add_task", {"title": "x", "due": "today"}), "unexpected argument 'due'"),
    (ToolCall("add_task", {"title": "  "}), "is empty"),
])
def test_schema_names_each_problem(schema, call, expected):
    assert any(expected in p for p in schema.problems(call)), schema.problems(call)


def test_normalize_collapses_whitespace_and_coerces_integers(schema):
    assert schema.normalize(ToolCall("complete_task", {"task_id": " 7 "})) == ToolCall("complete_task", {"task_id": 7})
    assert schema.normalize(ToolCall("add_task", {"title": " Buy   milk "})).arguments == {"title": "Buy milk"}


@pytest.mark.parametrize("text, expected", [
    ('{"name": "add_task", "arguments": {"title": "Buy milk"}}', ToolCall("add_task", {"title": "Buy milk"})),
    ('Sure! {"name": "list_tasks", "arguments": {}} done', ToolCall("list_tasks", {})),
    ('{"name": "complete_task", "arguments": "{\\"task_id\\": 3}"}', ToolCall("complete_task", {"task_id": 3})),
    ('{not json} {"name": "delete_task", "arguments": {"task_id": 1}}', ToolCall("delete_task", {"task_id": 1})),
    ("I cannot help with that.", None),
    ('{"title": "no name"}', None),
])
def test_parse_tool_call(text, expected):
    assert parse_tool_call(text) == expected


def test_model_messages_render_tool_calls_as_the_json_the_model_emits():
    seed_row = [
        {"role": "user", "content": "Add task: Buy milk"},
        {"role": "assistant", "content": None,
         "tool_calls": [{"function": {"name": "add_task", "arguments": "{\"title\": \"Buy milk\"}"}}]},
    ]
    rendered = model_messages(seed_row, "SYSTEM")
    assert rendered[0] == {"role": "system", "content": "SYSTEM"}
    assert json.loads(rendered[2]["content"]) == {"name": "add_task", "arguments": {"title": "Buy milk"}}
    assert tool_calls_of(seed_row[1]) == [ToolCall("add_task", {"title": "Buy milk"})]
