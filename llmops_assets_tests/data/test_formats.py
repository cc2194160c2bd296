"""Every source format and row shape normalizes to the same chat messages; every bad row or file
is quarantined with its file and line/row, never dropped and never a crash."""

import json

import pandas as pd
import pytest

from llmops_assets.data.ingest import ingest, source_fingerprints

CALL = {"name": "add_task", "arguments": {"title": "Buy milk"}}
EXPECTED = [{"role": "user", "content": "Add task: Buy milk"},
            {"role": "assistant", "content": None,
             "tool_calls": [{"function": {"name": "add_task", "arguments": json.dumps(CALL["arguments"])}}]}]
SHAPES = {
    "messages": {"messages": EXPECTED},
    "prompt_completion": {"prompt": "Add task: Buy milk", "completion": json.dumps(CALL)},
    "instruction_response": {"instruction": "Add task: Buy milk", "response": json.dumps(CALL)},
    "instruction_output": {"instruction": "Add task: Buy milk", "output": json.dumps(CALL)},
}


@pytest.mark.parametrize("shape", SHAPES)
def test_every_row_shape_in_jsonl_normalizes_to_the_same_messages(tmp_path, shape):
    (tmp_path / "a.jsonl").write_text(json.dumps(SHAPES[shape]) + "\n")
    [record] = ingest([tmp_path]).records
    assert record["messages"] == EXPECTED and record["origin"] == f"{tmp_path / 'a.jsonl'}:1"


def test_a_text_answer_stays_text_and_input_joins_the_instruction(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"instruction": "Translate", "input": "hello", "output": "bonjour"}) + "\n")
    [record] = ingest([tmp_path]).records
    assert record["messages"] == [{"role": "user", "content": "Translate\n\nhello"},
                                  {"role": "assistant", "content": "bonjour"}]


def test_csv_parquet_and_saved_datasets_are_read_with_their_row_numbers(tmp_path):
    from datasets import Dataset, DatasetDict

    rows = [{"prompt": "Add task: Buy milk", "completion": json.dumps(CALL)}, {"prompt": "Hi", "completion": "Hello"}]
    pd.DataFrame(rows).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame(rows).to_parquet(tmp_path / "b.parquet")
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "c_saved"))
    splits = DatasetDict({"train": Dataset.from_list(rows[:1]), "test": Dataset.from_list(rows[1:])})
    splits.save_to_disk(str(tmp_path / "d_dict"))
    result = ingest([tmp_path])
    assert not result.quarantined
    origins = [r["origin"] for r in result.records]
    assert origins == [f"{tmp_path / 'a.csv'}:line 2", f"{tmp_path / 'a.csv'}:line 3",
                       f"{tmp_path / 'b.parquet'}:row 1", f"{tmp_path / 'b.parquet'}:row 2",
                       f"{tmp_path / 'c_saved'}:row 1", f"{tmp_path / 'c_saved'}:row 2",
                       f"{tmp_path / 'd_dict'}:row 1", f"{tmp_path / 'd_dict'}:row 2"]
    assert all(r["messages"] == EXPECTED for r in result.records[::2])
    assert set(source_fingerprints([tmp_path])) == {str(tmp_path / n) for n in ("a.csv", "b.parquet", "c_saved", "d_dict")}


def test_messages_as_json_text_in_a_csv_cell(tmp_path):
    pd.DataFrame([{"messages": json.dumps(EXPECTED)}, {"messages": "[not json"}]).to_csv(tmp_path / "m.csv", index=False)
    result = ingest([tmp_path])
    assert [r["messages"] for r in result.records] == [EXPECTED]
    [bad] = result.quarantined
    assert bad["origin"] == f"{tmp_path / 'm.csv'}:line 3" and "'messages' is not valid JSON" in bad["reason"]


def test_bad_rows_and_unreadable_files_are_quarantined_with_where_and_why(tmp_path):
    pd.DataFrame([{"question": "x", "answer": "y"}]).to_csv(tmp_path / "wrong_columns.csv", index=False)
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 this is not parquet")
    (tmp_path / "types.jsonl").write_text(json.dumps({"prompt": 3, "completion": "x"}) + "\n"
                                          + json.dumps({"messages": "x"}) + "\n")
    result = ingest([tmp_path])
    assert result.records == []
    reasons = {q["origin"]: q["reason"] for q in result.quarantined}
    assert reasons[f"{tmp_path / 'wrong_columns.csv'}:line 2"].startswith("expected 'messages', 'prompt' + 'completion'")
    assert reasons[str(tmp_path / "broken.parquet")].startswith("unreadable .parquet source")
    assert reasons[f"{tmp_path / 'types.jsonl'}:1"] == "the request and the answer must be text"
    assert reasons[f"{tmp_path / 'types.jsonl'}:2"].startswith("'messages' is not valid JSON")
    assert result.input_rows == len(result.quarantined) == 4


def test_a_source_without_a_valid_row_fails_naming_the_file_and_the_reasons(tmp_path):
    from llmops_assets.core.tools import ToolSchema
    from llmops_assets.data.curate import curate
    from llmops_assets.settings import load_settings

    (tmp_path / "bad.jsonl").write_text("{oops\n" + json.dumps({"question": "x"}) + "\n")
    schema = ToolSchema.from_file(load_settings().domain.tools_file)
    with pytest.raises(ValueError, match=r"no valid example in .*bad\.jsonl.*2 rows quarantined.*bad\.jsonl:1: malformed JSON"):
        curate(ingest([tmp_path]), schema, {"train": 0.8, "validation": 0.1, "test": 0.1}, 1, lambda r: 1)


def test_a_broken_csv_row_is_quarantined_alone_with_its_line(tmp_path):
    """An unterminated quote used to quarantine the whole file, naming no line."""
    good = [f'"Add task: Buy milk {i}","{json.dumps(CALL).replace(chr(34), chr(34) * 2)}"\n' for i in range(4)]
    broken = '"Add task: Call mom,"{""name"": ""add_task""}"\n'
    (tmp_path / "a.csv").write_text("prompt,completion\n" + good[0] + good[1] + broken + good[2] + good[3])
    result = ingest([tmp_path])
    assert [r["origin"] for r in result.records] == [f"{tmp_path / 'a.csv'}:line {n}" for n in (2, 3, 5, 6)]
    [bad] = result.quarantined
    assert bad["origin"] == f"{tmp_path / 'a.csv'}:line 4" and "malformed CSV record" in bad["reason"]
    assert bad["raw"] == broken.rstrip("\n")


def test_a_csv_row_with_too_many_fields_is_quarantined_and_a_quoted_newline_is_one_row(tmp_path):
    (tmp_path / "a.csv").write_text('instruction,output\n"Say\nhello",hi\nextra,field,here\nBye,bye\n')
    result = ingest([tmp_path])
    assert [(r["origin"].rsplit(":", 1)[1], r["messages"][0]["content"]) for r in result.records] == [
        ("line 2", "Say\nhello"), ("line 5", "Bye")]
    [bad] = result.quarantined
    assert bad["origin"].endswith(":line 4") and "3 fields, the header has 2" in bad["reason"]


def test_a_corrupt_parquet_row_group_is_quarantined_and_the_others_kept(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"prompt": f"Add task: Buy milk {i}", "completion": json.dumps(CALL)} for i in range(6)]
    path = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=2, compression="NONE")
    data = bytearray(path.read_bytes())
    middle = pq.ParquetFile(path).metadata.row_group(1).column(0)
    offset = middle.data_page_offset
    data[offset:offset + middle.total_compressed_size] = b"\xff" * middle.total_compressed_size
    path.write_bytes(bytes(data))
    result = ingest([tmp_path])
    assert [r["origin"].rsplit(":", 1)[1] for r in result.records] == ["row 1", "row 2", "row 5", "row 6"]
    [bad] = result.quarantined
    assert bad["origin"].endswith(":rows 3-4") and "row group 1" in bad["reason"]
