"""Alembic environment of actes-pes: the shared runner, on an async engine."""

from kanol_common.migrations import run_env

run_env()
