"""Settings: each stage's reuse key comes from its whole settings model, and every path field,
wherever it is nested, resolves against the config file's folder."""

from pathlib import Path

from pydantic import Field

from llmops_assets.core.config import REUSE_KEY, StrictModel, reuse_key
from llmops_assets.settings import load_settings
from llmops_assets.training.config import TrainingSettings


def test_a_field_added_to_a_stage_model_is_in_its_reuse_key_unless_marked():
    class WithNewField(TrainingSettings):
        label_smoothing: float = 0.0

    key = WithNewField(label_smoothing=0.1).stage_config("sft")
    assert key["label_smoothing"] == 0.1  # a new field can never silently reuse a stale adapter
    assert reuse_key(WithNewField(), "cpt")["label_smoothing"] == 0.0


def test_what_shapes_no_weights_or_another_stage_is_left_out_of_the_key():
    settings = TrainingSettings()
    tracked = TrainingSettings(tracking={"wandb": "disabled"}, kubernetes={"gpus": 0})
    assert settings.stage_config("sft") == tracked.stage_config("sft")
    assert "dpo" not in settings.stage_config("sft") and "continued_pretraining" not in settings.stage_config("sft")
    assert "learning_rate" not in settings.stage_config("cpt")  # SFT's own learning rate
    assert settings.stage_config("dpo")["dpo"]["beta"] == settings.dpo.beta
    changed = TrainingSettings(lora={"r": 8})
    assert all(changed.stage_config(s) != settings.stage_config(s) for s in ("cpt", "sft", "dpo"))


def test_marks_apply_to_nested_models():
    class Inner(StrictModel):
        kept: int = 1
        only_b: int = Field(2, json_schema_extra={REUSE_KEY: ["b"]})

    class Outer(StrictModel):
        inner: Inner = Inner()

    assert reuse_key(Outer(), "a") == {"inner": {"kept": 1}}
    assert reuse_key(Outer(), "b") == {"inner": {"kept": 1, "only_b": 2}}


def test_every_path_field_resolves_against_the_config_folder(tmp_path):
    folder = tmp_path / "project" / "config"
    folder.mkdir(parents=True)
    (folder / "pipeline.yaml").write_text(
        "domain: {system_prompt: x, tools_file: tools.json}\n"
        "stages:\n"
        "  data: {sources: [data/a.jsonl, ../b.csv]}\n"
        "  training:\n"
        "    continued_pretraining: {corpus: [docs/]}\n"
        "    dpo: {preferences: [feedback/pairs.jsonl]}\n"
        "  evaluation: {safety_suite: suites/safety.jsonl}\n")
    settings = load_settings(folder / "pipeline.yaml")
    stages = settings.stages
    assert settings.domain.tools_file == folder / "tools.json"
    assert stages.data.sources == [folder / "data" / "a.jsonl", folder.parent / "b.csv"]
    assert stages.training.continued_pretraining.corpus == [folder / "docs"]
    assert stages.training.dpo.preferences == [folder / "feedback" / "pairs.jsonl"]
    assert stages.evaluation.safety_suite == folder / "suites" / "safety.jsonl"
    assert all(p.is_absolute() for p in [*stages.data.sources, settings.domain.tools_file])
    assert Path(load_settings().stages.evaluation.safety_suite).is_file()  # packaged defaults stay absolute
