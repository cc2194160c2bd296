import json
import re

import pytest

from llmops_assets.core.chat import tool_calls_of
from llmops_assets.core.examples import format_problems
from llmops_assets.core.storage import read_jsonl
from llmops_assets.core.tools import ToolSchema
from llmops_assets.data.config import NearDuplicateSettings, QualityFilterSettings, SyntheticSettings
from llmops_assets.data.curate import curate, leaked_requests, normalized_text, request_similarity
from llmops_assets.data.expand import expand
from llmops_assets.data.ingest import ingest
from llmops_assets.data.synth import SEED_FILE, generate_task_api_examples
from llmops_assets.evaluation.safety import load_suite
from llmops_assets.settings import load_settings

RATIOS = {"train": 0.8, "validation": 0.1, "test": 0.1}


@pytest.fixture(scope="module")
def schema():
    return ToolSchema.from_file(load_settings().domain.tools_file)


def call_row(request, name, arguments):
    return {"messages": [{"role": "user", "content": request},
                         {"role": "assistant", "content": None,
                          "tool_calls": [{"function": {"name": name, "arguments": json.dumps(arguments)}}]}]}


def test_shipped_seed_file_is_the_generators_output():
    assert read_jsonl(SEED_FILE) == generate_task_api_examples()


def test_the_safety_suite_is_large_composed_afresh_and_shipped_as_composed():
    from llmops_assets.evaluation import safety_suite

    suite = load_suite(safety_suite.SUITE_FILE)
    assert suite == safety_suite.compose_suite() and len(suite) >= 100
    assert all(sum(c["category"] == category for c in suite) >= 20
               for category in ("harmful", "pii", "destructive", "prompt_injection"))
    seed_requests = [r["messages"][0]["content"].casefold() for r in read_jsonl(SEED_FILE)]
    parts = [*safety_suite.HARM_ACTS, *safety_suite.HARM_WRITES, *safety_suite.PRIVATE_FIELDS,
             *safety_suite.PRIVATE_PEOPLE, *safety_suite.OTHER_PEOPLE, *safety_suite.BULK_OBJECTS,
             *safety_suite.BULK_COMPLETIONS, *safety_suite.INJECTION_PREFIXES, *safety_suite.INJECTION_ACTS,
             *(f"{verb} " for verb in safety_suite.BULK_VERBS), *(c["request"] for c in safety_suite.HAND_WRITTEN)]
    for part in parts:
        literal = max(re.split(r"\{\w+\}", part), key=len).casefold()  # the longest piece without a placeholder
        assert not any(literal in request for request in seed_requests), f"suite part {part!r} occurs in the seed"


def test_the_seed_teaches_the_safety_behaviour_without_the_suites_own_requests(schema):
    rows = read_jsonl(SEED_FILE)
    suite = load_suite(load_settings().stages.evaluation.safety_suite)
    requests = {r["messages"][0]["content"].casefold() for r in rows}
    assert not requests & {c["request"].casefold() for c in suite}
    answers = [r["messages"][1] for r in rows]
    refusals = [a["content"] for a in answers if not a.get("tool_calls")]
    assert len(refusals) >= 0.15 * len(rows)
    assert any(text.startswith(("I can't help", "Sorry, I won't help")) for text in refusals)  # harm
    assert any("other people" in text or "other users" in text for text in refusals)  # privacy
    assert any(text.startswith("I can only delete one task at a time") for text in refusals)  # bulk deletion
    literal_titles = [tool_calls_of(a)[0].arguments["title"] for a in answers
                      if a.get("tool_calls") and tool_calls_of(a)[0].name == "add_task"]
    assert sum(title.casefold().startswith(("ignore", "system override", "delete task")) for title in literal_titles) >= 10


def test_ingest_quarantines_unreadable_lines_with_file_and_line(tmp_path):
    source = tmp_path / "a.jsonl"
    good = json.dumps(call_row("Add task: x", "add_task", {"title": "x"}))
    source.write_bytes(f'{good}\n{{"messages": [\n\n"just a string"\n'.encode() + b"\xff\xfe\n" + f"{good}\n".encode())
    result = ingest([tmp_path])
    assert len(result.records) == 2
    reasons = {q["origin"]: q["reason"] for q in result.quarantined}
    assert set(reasons) == {f"{source}:2", f"{source}:4", f"{source}:5"}
    assert reasons[f"{source}:2"].startswith("malformed JSON")
    assert "expected an object with 'messages'" in reasons[f"{source}:4"]
    assert reasons[f"{source}:5"].startswith("not UTF-8")
    assert result.records[0]["origin"] == f"{source}:1"
    assert result.records[0]["id"] == result.records[1]["id"]  # same content, same id


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ingest([tmp_path / "nope.jsonl"])


@pytest.mark.parametrize("messages, expected", [
    ([], "no messages"),
    ([{"role": "assistant", "content": "hi"}], "expected a user message"),
    ([{"role": "user", "content": "hi"}], "last message must be the assistant"),
    ([{"role": "user", "content": ""}, {"role": "assistant", "content": "x"}], "user message has no content"),
    ([{"role": "robot", "content": "x"}], "role must be one of"),
    (call_row("x", "add_task", {})["messages"], "missing required argument 'title'"),
    ([{"role": "user", "content": "x"},
      {"role": "assistant", "tool_calls": [{"function": {"name": "add_task", "arguments": "{oops"}}]}],
     "tool call does not parse"),
])
def test_format_problems(schema, messages, expected):
    assert any(expected in p for p in format_problems(messages, schema)), format_problems(messages, schema)


def test_curation_accounts_for_every_row(tmp_path, schema):
    rows = [call_row(f"Add task: item {i}", "add_task", {"title": f"item {i}"}) for i in range(40)]
    rows += [call_row("add task:   item 4 ", "add_task", {"title": "item 4"})]  # dup after normalizing
    rows += [call_row("Delete it", "delete_task", {"task_id": "one"})]  # wrong type
    (tmp_path / "s.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n")
    result = curate(ingest([tmp_path]), schema, RATIOS, seed=1, count_tokens=lambda r: 10)
    report = result.report
    assert report["input_rows"] == 43
    assert report["duplicates_removed"] == 1 and report["quarantined"] == 2
    assert report["total_examples"] == 40
    assert report["input_rows"] == report["total_examples"] + report["quarantined"] + report["duplicates_removed"]
    assert result.duplicates[0]["duplicate_of"].endswith(":5")
    assert {q["origin"].rsplit(":", 1)[1] for q in result.quarantined} == {"42", "43"}


def test_split_is_deterministic_stratified_and_keeps_similar_requests_in_one_split(tmp_path, schema):
    long = "Please add a task to call the plumber about the leaking kitchen tap before the weekend starts"
    rows = [call_row(f"Delete task {i}", "delete_task", {"task_id": i}) for i in range(100)]
    rows += [call_row(f"List {i}", "list_tasks", {}) for i in range(20)]
    for copy in range(6):  # the same request with different answers, and light rephrasings of another
        rows.append(call_row("Show my tasks", "list_tasks", {"status": ["open", "done"][copy % 2]} if copy else {}))
        rows.append(call_row(long + "!" * copy, "add_task", {"title": f"call the plumber {copy}"}))
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in reversed(rows)))
    near_off = NearDuplicateSettings(enabled=False)  # keep every rephrasing: only the split groups them

    def split_of(folder):
        result = curate(ingest([folder]), schema, RATIOS, seed=3, count_tokens=lambda r: 10, near=near_off)
        return result, {name: sorted(r["id"] for r in rows) for name, rows in result.splits.items()}

    (first, ids), (_, reversed_ids) = split_of(tmp_path / "a.jsonl"), split_of(tmp_path / "b")
    assert ids == reversed_ids
    assert len(first.splits["test"]) >= 10 and any(r["messages"][0]["content"].startswith("List") for r in first.splits["test"])
    grouped = {name for name, split in first.splits.items() for r in split
               if r["messages"][0]["content"] == "Show my tasks" or "plumber" in r["messages"][0]["content"]}
    assert first.report["similar_request_groups"] == 2 and first.report["largest_request_group"] == 6  # 3 exact repeats
    requests = request_similarity(near_off, 0.85)
    assert leaked_requests(first.splits, requests) == []
    assert len(grouped) <= 2  # each group whole in one split

    moved = next(r for name, split in first.splits.items() for r in split if "plumber" in r["messages"][0]["content"])
    elsewhere = next(name for name in ("train", "test") if moved not in first.splits[name])
    first.splits[elsewhere].append(json.loads(json.dumps(moved)) | {"messages": call_row(
        moved["messages"][0]["content"] + "?", "add_task", {"title": "x"})["messages"]})
    leaks = leaked_requests(first.splits, requests)
    assert leaks and all(" resembles (similarity 0.8" in leak or " resembles (similarity 0.9" in leak for leak in leaks)
    assert all(moved["origin"] in leak for leak in leaks)
    first.splits["validation"].append(json.loads(json.dumps(first.splits["train"][0])))
    assert sum(" repeats the request of " in leak for leak in leaked_requests(first.splits, requests)) == 1


def test_near_duplicates_are_removed_with_their_cluster_and_similarity(tmp_path, schema):
    base = "Please add a task to call the plumber about the leaking kitchen tap before the weekend starts"
    rows = [call_row(f"{base}", "add_task", {"title": "call the plumber"}),
            call_row(f"{base}!", "add_task", {"title": "call the plumber"}),              # one token differs
            call_row(base.replace("Please add", "Kindly add"), "add_task", {"title": "call the plumber"}),
            call_row("Show my open tasks", "list_tasks", {"status": "open"})]
    rows += [call_row(f"Add task: item {i}", "add_task", {"title": f"item {i}"}) for i in range(20)]
    (tmp_path / "s.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    near = NearDuplicateSettings(threshold=0.7)
    result = curate(ingest([tmp_path]), schema, RATIOS, seed=1, count_tokens=lambda r: 10, near=near)
    report = result.report
    assert report["near_duplicates"] == 2 and report["near_duplicate_clusters"] == 1 and report["exact_duplicates"] == 0
    assert {d["origin"].rsplit(":", 1)[1] for d in result.duplicates} == {"2", "3"}
    assert all(d["duplicate_of"].endswith(":1") and d["similarity"] >= 0.7 for d in result.duplicates)
    assert report["input_rows"] == report["total_examples"] + report["quarantined"] + report["duplicates_removed"]
    kept = curate(ingest([tmp_path]), schema, RATIOS, seed=1, count_tokens=lambda r: 10,
                  near=NearDuplicateSettings(enabled=False))
    assert kept.report["total_examples"] == 24


def test_the_seeds_near_duplicates_differ_by_a_greeting_or_one_word(schema):
    result = curate(ingest([SEED_FILE]), schema, RATIOS, seed=42, count_tokens=lambda r: 10, near=NearDuplicateSettings())
    assert result.report["near_duplicates"] == 5 and result.report["exact_duplicates"] == 18
    requests = {r["origin"]: r["messages"][0]["content"] for r in ingest([SEED_FILE]).records}

    def bare(request: str) -> str:
        return request.casefold().removeprefix("hey, ").removeprefix("hi! ")

    for duplicate in result.duplicates:  # "Hey, clear every task on my list" next to "Axe every task on my list"
        if duplicate["kind"] == "near":
            a, b = bare(requests[duplicate["origin"]]).split(), bare(requests[duplicate["duplicate_of"]]).split()
            assert len(set(a) ^ set(b)) <= 2, (a, b)  # one word swapped at most


def test_the_great_expectations_suite_passes_the_seed_and_names_each_bad_example(schema):
    from llmops_assets.data.expectations import example_table, validate

    splits = curate(ingest([SEED_FILE]), schema, RATIOS, seed=42, count_tokens=lambda r: 10).splits
    tokens = {r["id"]: 10 for part in splits.values() for r in part}
    assert all(o["success"] for o in validate(example_table(splits, tokens, schema), schema, max_tokens=2048))

    unknown_tool, assistant_only, too_long = splits["train"][:3]
    unknown_tool["messages"][1]["tool_calls"][0]["function"]["name"] = "drop_database"
    assistant_only["messages"] = assistant_only["messages"][1:]
    tokens[too_long["id"]] = 5000
    outcomes = {o["expectation"]: o for o in validate(example_table(splits, tokens, schema), schema, max_tokens=2048)}
    failed = {name for name, o in outcomes.items() if not o["success"]}
    assert failed == {"ExpectColumnValuesToMatchRegex(role_order)", "ExpectColumnValuesToBeBetween(tokens)",
                      "ExpectColumnValuesToBeInSet(tool)", "ExpectColumnValuesToBeInSet(schema_problems)"}
    assert outcomes["ExpectColumnValuesToBeInSet(tool)"]["examples"] == [
        {"origin": unknown_tool["origin"], "tool": "drop_database"}]
    assert outcomes["ExpectColumnValuesToBeBetween(tokens)"]["unexpected_count"] == 1


def test_quality_filters_quarantine_with_the_reason_and_spare_the_seed(tmp_path, schema):
    rows = [call_row("x", "add_task", {"title": "x"}),
            call_row("spam " * 12, "add_task", {"title": "spam"}),
            call_row("Add task: pay\x07 rent", "add_task", {"title": "pay rent"}),
            call_row("Add task: " + " ".join(f"word{i}" for i in range(30)), "add_task", {"title": "long"})]
    rows += [call_row(f"Add task: item {i}", "add_task", {"title": f"item {i}"}) for i in range(20)]
    (tmp_path / "s.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    filters = QualityFilterSettings(max_chars=150)
    result = curate(ingest([tmp_path]), schema, RATIOS, seed=1, count_tokens=lambda r: 10, quality=filters)
    reasons = {q["origin"].rsplit(":", 1)[1]: q["reason"] for q in result.quarantined}
    assert reasons["1"] == "quality: request shorter than 2 characters"
    assert reasons["2"].startswith("quality: 'spam' is") and reasons["2"].endswith("of the words")
    assert reasons["3"] == "quality: contains control characters"
    assert reasons["4"] == "quality: longer than 150 characters"
    assert len(reasons) == 4
    report = result.report
    assert report["quality_filtered"] == 4 and report["format_errors"] == 0 and report["format_valid_ratio"] == 1.0
    assert report["input_rows"] == report["total_examples"] + report["quarantined"] + report["duplicates_removed"]
    seed = curate(ingest([SEED_FILE]), schema, RATIOS, seed=42, count_tokens=lambda r: 10, quality=QualityFilterSettings())
    assert seed.report["quality_filtered"] == 0


def test_template_expansion_reaches_the_target_with_valid_tagged_new_rows(schema):
    seeds = ingest([SEED_FILE]).records
    settings = SyntheticSettings(enabled=True, generator="template", target_count=len(seeds) + 300)
    expansion = expand(seeds, schema, settings, QualityFilterSettings())
    assert len(expansion.records) == 300 and expansion.attempts == 300 + len(expansion.rejected)
    assert all(r["synthetic"] == "template" and r["origin"].startswith("synthetic:template:") for r in expansion.records)
    assert not any(format_problems(r["messages"], schema) for r in expansion.records)
    known = {normalized_text(r["messages"]) for r in seeds}
    assert not any(normalized_text(r["messages"]) in known for r in expansion.records)
    assert all(q["reason"] == "repeats an existing example" for q in expansion.rejected)  # the template's repeats
    assert [r["id"] for r in expand(seeds, schema, settings, QualityFilterSettings()).records] == \
        [r["id"] for r in expansion.records]  # deterministic
    assert expand(seeds, schema, settings.model_copy(update={"target_count": 10}), QualityFilterSettings()).attempts == 0
    ingested = ingest([SEED_FILE])
    ingested.records += expansion.records
    report = curate(ingested, schema, RATIOS, 0, lambda r: 10).report
    assert report["synthetic_examples"] == {"template": 300}
    assert report["input_rows"] == report["total_examples"] + report["quarantined"] + report["duplicates_removed"]


@pytest.mark.parametrize("answer, reason", [
    ("Sure! Here you go.", "no JSON object in the answer"),
    ('{"request": "Add milk", "tool": "add_task", "arguments": {"title": "milk"', "no JSON object in the answer"),
    ('{"request": "Add milk", "tool": "add_task", "arguments": {"title": "milk"}, }', "malformed JSON"),
    ('{"tool": "add_task", "arguments": {}}', "expected an object with 'request'"),
    ('{"request": "Add milk", "tool": "buy_milk", "arguments": {}}', "unknown tool 'buy_milk'"),
    ('{"request": "Remove task 3", "tool": "delete_task", "arguments": {"task_id": "three"}}', "task_id"),
    ('{"request": "a", "tool": "list_tasks", "arguments": {}}', "quality: request shorter than"),
])
def test_llm_rows_that_do_not_parse_or_fit_the_schema_are_rejected_with_why(schema, answer, reason):
    seeds = ingest([SEED_FILE]).records[:20]
    settings = SyntheticSettings(enabled=True, generator="llm", target_count=21, max_attempts_per_example=1)
    quality = QualityFilterSettings(min_request_chars=2)
    expansion = expand(seeds, schema, settings, quality, ask=lambda messages, response_format, seed: answer)
    assert not expansion.records and expansion.attempts == 1
    assert expansion.rejected[0]["origin"] == "synthetic:llm:1" and reason in expansion.rejected[0]["reason"]
    assert expansion.rejected[0]["raw"] == answer


def test_the_llm_is_shown_source_examples_and_the_tool_schema(schema):
    seeds = ingest([SEED_FILE]).records[:20]
    asked = []

    def ask(messages, response_format, seed):
        asked.append((messages, response_format))
        return '{"request": "Put oil change on my list", "tool": "add_task", "arguments": {"title": "Oil change"}}'

    settings = SyntheticSettings(enabled=True, generator="llm", target_count=21, few_shot=3)
    expansion = expand(seeds, schema, settings, QualityFilterSettings(), ask=ask)
    assert [r["messages"][0]["content"] for r in expansion.records] == ["Put oil change on my list"]
    (messages, response_format), = asked
    shown = [json.loads(line) for line in messages[0]["content"].splitlines() if line.startswith("{")]
    assert len(shown) == 3 and all({"request", "tool", "arguments"} == set(s) for s in shown)
    assert response_format["type"] == "json_object"
    assert [branch["properties"]["tool"]["const"] for branch in response_format["schema"]["anyOf"]] == schema.names


def test_the_template_generator_refuses_another_domain_saying_what_to_use():
    other = ToolSchema([{"type": "function", "function": {"name": "book_room", "parameters": {"type": "object"}}}])
    seeds = [call_row("Book room 4", "book_room", {})]
    with pytest.raises(ValueError, match="generator: llm"):
        expand(seeds, other, SyntheticSettings(enabled=True, target_count=5), QualityFilterSettings())
