"""Fixtures of the deployment tests: the Compose file, and each Kustomize overlay built."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.facts import ROOT

OVERLAYS = ("dev", "prod")
KUSTOMIZE_SH = ROOT / "scripts" / "kustomize.sh"


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="session")
def kustomize() -> Path:
    """kustomize, built once into ~/.cache/kanol/bin by scripts/kustomize.sh."""
    done = subprocess.run(
        ["bash", str(KUSTOMIZE_SH)], capture_output=True, text=True, check=False, timeout=1200
    )
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip())


def build(kustomize: Path, overlay: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [str(kustomize), "build", str(ROOT / "deploy" / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, f"kustomize build {overlay}: {done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="session")
def overlays(kustomize: Path) -> dict[str, list[dict[str, Any]]]:
    """Every overlay's resources, as `kustomize build` prints them."""
    return {overlay: build(kustomize, overlay) for overlay in OVERLAYS}


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest, overlays: dict[str, list[dict[str, Any]]]) -> str:
    return str(request.param)
