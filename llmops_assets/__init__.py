"""llmops-assets: a Dagster code location that turns domain examples into a served, gated LLM."""


def __getattr__(name: str):
    # `llmops_assets.defs` without importing Dagster (and torch) for every stage-module import.
    if name == "defs":
        from llmops_assets.definitions import defs

        return defs
    raise AttributeError(name)
