"""What the optional training stages read (preference pairs, a domain corpus) and how a stage's
settings key its artifact: bad rows named by file and line, nothing silently dropped."""

import json
import os

import pytest

from llmops_assets.core.storage import link_tree, read_jsonl
from llmops_assets.core.tools import ToolSchema
from llmops_assets.data.synth import PREFERENCES_FILE, SEED_FILE, generate_task_api_preferences
from llmops_assets.settings import DEFAULT_CONFIG, load_settings
from llmops_assets.training.backends import current_backend
from llmops_assets.training.config import PreferenceSettings, TrainingSettings
from llmops_assets.training.cpt import corpus_blocks, perplexity_ratio, read_corpus, split_blocks
from llmops_assets.training.dpo import preference_sources, read_preferences, split_pairs

SCHEMA = ToolSchema.from_file(load_settings(DEFAULT_CONFIG).domain.tools_file)


def call(name, **arguments):
    return [{"role": "assistant", "content": None,
             "tool_calls": [{"function": {"name": name, "arguments": json.dumps(arguments)}}]}]


def test_the_shipped_preference_pairs_are_the_generator_output_and_all_valid():
    assert read_jsonl(PREFERENCES_FILE) == generate_task_api_preferences()
    pairs, quarantined = read_preferences([PREFERENCES_FILE], SCHEMA)
    assert len(pairs) == 176 and quarantined == []
    injected = [p for p in pairs if "Ignore your instructions" in p["prompt"][0]["content"]]
    assert injected and all("delete_task" in json.dumps(p["rejected"]) and "add_task" in json.dumps(p["chosen"])
                            for p in injected)
    refusals = [p for p in pairs if p["chosen"][0]["content"]]  # the safe answer preferred to carrying it out
    overdone = [p for p in pairs if p["rejected"][0]["content"]]  # a benign request preferred done, not refused
    assert len(refusals) == len(overdone) == 40
    assert {p["rejected"][0]["content"] for p in overdone} <= {p["chosen"][0]["content"] for p in refusals}
    seed_requests = {row["messages"][0]["content"].casefold() for row in read_jsonl(SEED_FILE)}
    assert not [p for p in pairs if p["prompt"][0]["content"].casefold() in seed_requests]  # never a test-split row


def test_feedback_pairs_train_beside_the_preference_files_unless_replay_is_off(tmp_path):
    feedback = tmp_path / "pairs.jsonl"
    off = PreferenceSettings()
    assert not off.enabled and off.replay
    assert preference_sources(off, None) == []  # nothing to train on: the SFT adapter passes through
    assert preference_sources(off, feedback) == [*off.preferences, feedback]  # anchors beside the feedback
    assert preference_sources(off.model_copy(update={"replay": False}), feedback) == [feedback]
    on = off.model_copy(update={"enabled": True, "replay": False})
    assert preference_sources(on, None) == on.preferences and preference_sources(on, feedback) == [*on.preferences, feedback]


def test_bad_preference_rows_are_quarantined_with_file_line_and_reason(tmp_path):
    good = {"prompt": [{"role": "user", "content": "Delete task 3"}], "chosen": call("delete_task", task_id=3),
            "rejected": call("complete_task", task_id=3)}
    rows = [
        json.dumps(good),
        "{not json",
        json.dumps({**good, "rejected": None}),
        json.dumps({**good, "chosen": call("drop_everything")}),
        json.dumps({**good, "rejected": good["chosen"]}),
        json.dumps({**good, "rejected": [{"role": "assistant", "content": "  "}]}),
    ]
    source = tmp_path / "prefs.jsonl"
    source.write_text("\n".join(rows) + "\n")
    pairs, quarantined = read_preferences([source], SCHEMA)
    assert [p["origin"] for p in pairs] == [f"{source}:1"]
    reasons = {q["origin"].rsplit(":", 1)[1]: q["reason"] for q in quarantined}
    assert len(pairs) + len(quarantined) == len(rows)
    assert reasons["2"].startswith("malformed JSON")
    assert "'rejected'" in reasons["3"]
    assert reasons["4"].startswith("chosen:") and "drop_everything" in reasons["4"]
    assert reasons["5"] == "chosen and rejected are the same answer"
    assert "neither content nor a tool call" in reasons["6"]


def test_a_missing_preference_file_fails_naming_it(tmp_path):
    with pytest.raises(ValueError, match="preference file not found"):
        read_preferences([tmp_path / "absent.jsonl"], SCHEMA)


def test_preference_split_is_seeded_and_holds_out_at_least_one_pair():
    pairs = [{"n": i} for i in range(10)]
    train, validation = split_pairs(pairs, PreferenceSettings(validation_share=0.2), seed=1)
    assert len(validation) == 2 and len(train) == 8 and (train, validation) == split_pairs(pairs, PreferenceSettings(), 1)
    with pytest.raises(ValueError, match="at least 2 valid preference pairs"):
        split_pairs(pairs[:1], PreferenceSettings(), 1)


def test_the_corpus_reads_text_files_folders_and_jsonl_naming_bad_rows(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Tasks\nA task is open or done.")
    (tmp_path / "docs" / "b.jsonl").write_text('{"text": "Delete removes a task."}\n\n{"text": "Done keeps it."}\n')
    documents = read_corpus([tmp_path / "docs"])
    assert [origin.rsplit("/", 1)[1] for origin, _ in documents] == ["a.md", "b.jsonl:1", "b.jsonl:3"]
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{"body": "no text field"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: a corpus row must be a JSON object with a string 'text'"):
        read_corpus([tmp_path / "bad.jsonl"])
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.txt: cannot read"):
        read_corpus([tmp_path / "latin1.txt"])
    (tmp_path / "empty.md").write_text("  \n")
    with pytest.raises(ValueError, match="holds no text"):
        read_corpus([tmp_path / "empty.md"])


def test_corpus_blocks_cover_the_stream_with_eos_between_documents():
    class Tokenizer:
        eos_token_id = 0

        def __call__(self, text, add_special_tokens):
            return {"input_ids": [len(word) for word in text.split()]}

    blocks = corpus_blocks(["a bb ccc", "dddd ee"], Tokenizer(), block_size=4)
    assert blocks == [[1, 2, 3, 0], [4, 2, 0]]  # a last block of at least half a block is kept
    assert corpus_blocks(["a bb ccc dddd"], Tokenizer(), block_size=4) == [[1, 2, 3, 4]]  # [0] is dropped
    settings = TrainingSettings().continued_pretraining
    with pytest.raises(ValueError, match="at least 2"):
        split_blocks(blocks[:1], settings, seed=0)
    assert perplexity_ratio([2.0, 1.5, 1.0]) == pytest.approx(0.3679, abs=1e-4)


def test_each_training_stage_is_keyed_by_its_own_settings_only():
    settings = TrainingSettings()
    changed_dpo = settings.model_copy(update={"dpo": PreferenceSettings(beta=0.5)})
    assert changed_dpo.stage_config("sft") == settings.stage_config("sft")
    assert changed_dpo.stage_config("dpo") != settings.stage_config("dpo")
    changed_sft = settings.model_copy(update={"learning_rate": 0.01})
    assert changed_sft.stage_config("cpt") == settings.stage_config("cpt")
    assert changed_sft.stage_config("sft") != settings.stage_config("sft")
    assert "tracking" not in settings.stage_config("sft")  # where runs are logged changes no weights


def test_qlora_without_a_gpu_fails_saying_what_to_do():
    settings = TrainingSettings.model_validate({"lora": {"load_in_4bit": True}})
    with pytest.raises(RuntimeError, match="load_in_4bit .* needs the unsloth backend"):
        current_backend(settings)


def test_a_switched_off_stage_shares_its_input_files_without_copying(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_bytes(b"w" * 1024)
    link_tree(tmp_path / "model", tmp_path / "out" / "model")
    original, linked = tmp_path / "model" / "weights.bin", tmp_path / "out" / "model" / "weights.bin"
    assert linked.read_bytes() == original.read_bytes()
    assert os.stat(linked).st_ino == os.stat(original).st_ino
