"""What the code says the deployment must match: settings, entry points, topics, metrics.

The deployment files are checked against these facts read from the code itself, so that a
renamed setting, command, topic, consumer group or metric breaks a test here.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kanol_actes_pes.settings import ActesPesSettings
from kanol_archive.settings import ArchiveSettings
from kanol_common.settings import CommonSettings
from kanol_identity.settings import IdentitySettings

ROOT = Path(__file__).resolve().parents[2]

# The settings class each entry point reads; the simulators read only common settings
# (KANOL_LOG_FORMAT, KANOL_DATA_DIR for the prefecture's default state file).
SETTINGS_BY_MODULE: dict[str, type[CommonSettings]] = {
    "kanol_identity": IdentitySettings,
    "kanol_actes_pes": ActesPesSettings,
    "kanol_archive": ArchiveSettings,
    "kanol_actes_pes.simulators.prefecture": CommonSettings,
    "kanol_actes_pes.simulators.helios": CommonSettings,
}


def identity_extra_variables() -> frozenset[str]:
    """KANOL_* variables read outside the settings classes (the seed command's secret)."""
    from kanol_identity.__main__ import SECRET_ENV

    return frozenset({SECRET_ENV})


def setting_names(settings: type[CommonSettings]) -> frozenset[str]:
    prefix = str(settings.model_config.get("env_prefix", ""))
    return frozenset(f"{prefix}{name}".upper() for name in settings.model_fields)


def known_variables(module: str) -> frozenset[str]:
    names = setting_names(SETTINGS_BY_MODULE[module])
    if module == "kanol_identity":
        names |= identity_extra_variables()
    return names


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Only these KANOL_* variables in os.environ while the block runs."""
    saved = dict(os.environ)
    try:
        for name in [name for name in os.environ if name.startswith("KANOL_")]:
            del os.environ[name]
        os.environ.update(values)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def load_settings(module: str, values: Mapping[str, str]) -> CommonSettings:
    """The entry point's settings as the process would read them from ``values``."""
    with environment(values):
        # No .env file: only the given environment counts.
        return SETTINGS_BY_MODULE[module](_env_file=None)


def python_module_of(command: list[str]) -> tuple[str, list[str]]:
    """``python -m MODULE ARGS...`` -> (MODULE, ARGS)."""
    assert command[:2] == ["python", "-m"], f"not a `python -m` command: {command}"
    return command[2], command[3:]


def option_value(arguments: list[str], option: str) -> str | None:
    for index, argument in enumerate(arguments):
        if argument == option and index + 1 < len(arguments):
            return arguments[index + 1]
        if argument.startswith(f"{option}="):
            return argument.split("=", 1)[1]
    return None


@functools.cache
def help_text(module: str, subcommand: str | None) -> str:
    """``python -m MODULE [SUBCOMMAND] --help``: fails if either does not exist."""
    assert importlib.util.find_spec(f"{module}.__main__") is not None, f"{module} has no __main__"
    arguments = [sys.executable, "-m", module, *([subcommand] if subcommand else []), "--help"]
    done = subprocess.run(arguments, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, f"{' '.join(arguments[1:])}: {done.stderr[-2000:]}"
    return done.stdout


def check_entry_point(command: list[str]) -> None:
    """The command's module, subcommand and every option are the entry point's own."""
    module, arguments = python_module_of(command)
    assert module in SETTINGS_BY_MODULE, f"unknown entry point {module}"
    subcommand = arguments[0] if arguments and not arguments[0].startswith("-") else None
    text = help_text(module, subcommand)
    for argument in arguments:
        if not argument.startswith("--"):
            continue
        option = argument.split("=", 1)[0]
        assert re.search(rf"(^|[\s,\[]){re.escape(option)}\b", text), (
            f"{module} {subcommand or ''}: no option {option}"
        )


def consumer_topology(tmp_dir: Path) -> dict[str, list[tuple[str, tuple[str, ...], str, str]]]:
    """Each service's consumer groups as its app builds them: (group, topics, retry, dlq)."""
    from kanol_actes_pes.app import create_app as actes_pes_app
    from kanol_archive.app import create_app as archive_app
    from kanol_identity.app import create_app as identity_app

    apps: dict[str, Any] = {}
    with environment({"KANOL_DATA_DIR": str(tmp_dir)}):
        apps["identity"] = identity_app(IdentitySettings(_env_file=None))
        apps["actes-pes"] = actes_pes_app(ActesPesSettings(_env_file=None))
        apps["archive"] = archive_app(ArchiveSettings(_env_file=None))
    return {
        name: [
            (c.group_id, tuple(c.physical_topics), c.retry_topic, c.dlq_topic)
            for c in app.state.runtime.consumers
        ]
        for name, app in apps.items()
    }


def metric_labels() -> dict[str, frozenset[str]]:
    """Every Prometheus series name the services expose -> its label names.

    The apps are imported so that every module defining a metric registers it; a counter
    ``x`` is exposed as ``x_total``, a histogram as ``x_bucket``, ``x_sum`` and ``x_count``.
    """
    from prometheus_client import REGISTRY
    from prometheus_client.metrics import MetricWrapperBase

    for module in (
        "kanol_identity.app",
        "kanol_actes_pes.app",
        "kanol_actes_pes.pes.monitor",
        "kanol_archive.app",
    ):
        importlib.import_module(module)

    series: dict[str, frozenset[str]] = {}
    for collector in list(REGISTRY._collector_to_names):
        if not isinstance(collector, MetricWrapperBase):
            continue  # the process and platform collectors: not the services' metrics
        labels = frozenset(collector._labelnames)
        for family in collector.describe():
            if not family.name.startswith("kanol_"):
                continue
            if family.type == "counter":
                names = [f"{family.name}_total"]
            elif family.type == "histogram":
                names = [f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count")]
                labels |= {"le"}
            else:
                names = [family.name]
            for name in names:
                series[name] = labels
    return series
