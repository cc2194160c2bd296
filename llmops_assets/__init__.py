"""llmops-assets: a Dagster code location that turns domain examples into a served, gated LLM."""

import importlib


def __getattr__(name: str):
    # `llmops_assets.defs` without importing Dagster (and torch) for every stage-module import;
    # imported by name so that the layers' import graph does not put Dagster under every stage.
    if name == "defs":
        return importlib.import_module("llmops_assets.definitions").defs
    raise AttributeError(name)
