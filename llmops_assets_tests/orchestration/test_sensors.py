"""The new-data sensor's decisions and the artifact reuse behind fast no-op reruns."""

from dagster import AssetMaterialization, DagsterInstance, MetadataValue, RunRequest, SkipReason, build_sensor_context

from llmops_assets.core.rows import changed_sources, file_fingerprints
from llmops_assets.core.storage import ArtifactStore
from llmops_assets.data.ingest import source_fingerprints
from llmops_assets.orchestration.resources import SOURCE_FILES, PipelineConfig
from llmops_assets.orchestration.sensors import new_data_sensor, training_data_sensor
from llmops_assets_tests.conftest import derived_config


def tick(instance, config, sensor=new_data_sensor):
    context = build_sensor_context(instance=instance, resources={"pipeline": PipelineConfig(config_path=str(config))})
    return sensor(context)


def record_ingest(instance, files: dict[str, str], asset: str = "raw_examples"):
    metadata = {SOURCE_FILES: MetadataValue.json(files)}
    instance.report_runless_asset_event(AssetMaterialization(asset, metadata=metadata))


def test_changed_sources_names_added_changed_and_removed_files():
    assert changed_sources({"a": "1", "b": "2"}, {"a": "1", "b": "0", "c": "3"}) == {"b": "2", "c": None}
    assert changed_sources({"a": "1"}, {"a": "1"}) == {}


def test_the_sensor_launches_once_per_new_state_of_the_sources(tmp_path):
    folder = tmp_path / "incoming"
    folder.mkdir()
    (folder / "a.jsonl").write_text('{"messages": []}\n')
    config = derived_config(tmp_path, {"stages": {"data": {"sources": [str(folder)]}}})
    instance = DagsterInstance.ephemeral()

    first = tick(instance, config)
    assert isinstance(first, RunRequest)
    selected = {k.to_user_string() for k in first.asset_selection}
    assert selected == {"base_model", "cpt_model", "preference_pairs", "raw_examples", "curated_dataset"}
    assert tick(instance, config).run_key == first.run_key  # a repeated tick asks for the same run: deduplicated

    for root in ("base_model", "cpt_model", "preference_pairs"):
        instance.report_runless_asset_event(AssetMaterialization(root))
    record_ingest(instance, source_fingerprints([folder]))
    assert isinstance(tick(instance, config), SkipReason)

    (folder / "b.jsonl").write_text('{"messages": []}\n')
    second = tick(instance, config)
    assert isinstance(second, RunRequest) and second.run_key != first.run_key
    assert {k.to_user_string() for k in second.asset_selection} == {"raw_examples", "curated_dataset"}
    assert second.tags["llmops/changed_files"] == "1"


def test_changed_feedback_or_corpus_retrains_only_that_stage_once(tmp_path):
    preferences, corpus = tmp_path / "preferences.jsonl", tmp_path / "corpus"
    preferences.write_text('{"prompt": []}\n')
    corpus.mkdir()
    (corpus / "api.md").write_text("# Task API\n")
    stages = {"continued_pretraining": {"enabled": True, "corpus": [str(corpus)]},
              "dpo": {"enabled": True, "preferences": [str(preferences)]}}
    config = derived_config(tmp_path, {"stages": {"training": stages}})
    instance = DagsterInstance.ephemeral()
    assert isinstance(tick(instance, config, training_data_sensor), SkipReason)  # never trained: the graph builds them
    record_ingest(instance, file_fingerprints([preferences]), "dpo_adapter")
    record_ingest(instance, file_fingerprints([corpus]), "cpt_model")
    assert isinstance(tick(instance, config, training_data_sensor), SkipReason)

    with preferences.open("a") as feedback:  # new feedback arrives
        feedback.write('{"prompt": [], "chosen": [], "rejected": []}\n')
    request = tick(instance, config, training_data_sensor)
    assert [k.to_user_string() for k in request.asset_selection] == ["dpo_adapter"]
    assert request.tags["llmops/changed_files"] == "1"
    assert tick(instance, config, training_data_sensor).run_key == request.run_key  # one run per new state

    (corpus / "more.md").write_text("## Due dates\n")  # a new document in the corpus folder
    both = tick(instance, config, training_data_sensor)
    assert sorted(k.to_user_string() for k in both.asset_selection) == ["cpt_model", "dpo_adapter"]
    stages["dpo"]["enabled"] = stages["continued_pretraining"]["enabled"] = False
    (tmp_path / "off").mkdir()
    assert isinstance(tick(instance, derived_config(tmp_path / "off", {"stages": {"training": stages}}),
                           training_data_sensor), SkipReason)  # a stage switched off is not retrained


def test_the_store_finds_an_artifact_built_from_the_same_inputs_and_config(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    with store.write("sft_adapter", inputs={"base_model": "b1"}, config={"lr": 0.1}) as out:
        (out.dir / "weights").write_text("w")
    assert store.find("sft_adapter", {"base_model": "b1"}, {"lr": 0.1}).version == out.version
    assert store.find("sft_adapter", {"base_model": "b2"}, {"lr": 0.1}) is None
    assert store.find("sft_adapter", {"base_model": "b1"}, {"lr": 0.2}) is None
