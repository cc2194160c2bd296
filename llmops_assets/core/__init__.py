"""The shared base every stage builds on: storage, releases, chat, tools, rows, inference, verdicts. No Dagster, no stage."""
