"""The Dagster face: assets, checks, jobs, sensors and resources, autoloaded by definitions.py."""
