"""Alembic environment of archive: the shared runner, on an async engine."""

from kanol_common.migrations import run_env

run_env()
