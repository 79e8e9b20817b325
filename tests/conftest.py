"""Shared fixtures: no network, a private OODBENCH_HOME per test, the offline catalog."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CATALOG = REPO.parent / "shared" / "data" / "catalog.toml"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Tests never touch the network: any connection attempt fails immediately."""

    def refuse(*args, **kwargs):
        raise OSError("network access is disabled in the oodbench tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(autouse=True)
def private_home(tmp_path, monkeypatch):
    """Each test gets its own OODBENCH_HOME and TORCH_HOME, and no catalog or plugins from the shell."""
    monkeypatch.setenv("OODBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("OODBENCH_CATALOG", raising=False)
    monkeypatch.delenv("OODBENCH_PLUGINS", raising=False)
    monkeypatch.setenv("OODBENCH_PROGRESS", "0")
    return tmp_path / "home"


@pytest.fixture(scope="session")
def catalog() -> Path:
    if not CATALOG.is_file():
        pytest.skip(f"offline catalog {CATALOG} not present")
    return CATALOG


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One artifact cache for the integration tests, so catalog archives are decoded once per session."""
    return tmp_path_factory.mktemp("shared-cache")


@pytest.fixture
def tiny_catalog(tmp_path) -> Path:
    """A catalog of small zip archives: a 10-class ID set ``tiny`` and an OOD set ``tiny-ood``."""
    from helpers import make_tiny_catalog

    return make_tiny_catalog(tmp_path / "data")
