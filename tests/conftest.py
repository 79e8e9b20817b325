"""Shared fixtures: no network, a private OODBENCH_HOME per test, the offline catalog."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CATALOG = REPO.parent / "shared" / "data" / "catalog.toml"
#: set by ``.ci/run``: CI installs everything a test can need (Ray, Chromium, the offline catalog, a
#: sandbox for --sealed), so there a skipped test is a missing dependency, and the session fails
STRICT = os.environ.get("OODBENCH_TEST_STRICT") == "1"


def pytest_sessionfinish(session, exitstatus) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if STRICT and skipped and exitstatus == 0:
        reporter.ensure_newline()
        reporter.write_line(f"OODBENCH_TEST_STRICT=1: {len(skipped)} test(s) skipped for a missing dependency, "
                            "which fails the session:", red=True)
        for report in skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            reporter.write_line(f"  {report.nodeid}: {reason}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Tests never touch the network: connections to anything but this machine fail immediately
    (the browser test talks to a local Chromium over loopback)."""
    connect, getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def local_connect(self, address, *args, **kwargs):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in LOOPBACK and not host.startswith("/"):
            raise OSError(f"network access to {host} is disabled in the oodbench tests")
        return connect(self, address, *args, **kwargs)

    def local_getaddrinfo(host, *args, **kwargs):
        if host not in LOOPBACK:
            raise OSError(f"name resolution of {host} is disabled in the oodbench tests")
        return getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", local_connect)
    monkeypatch.setattr(socket, "getaddrinfo", local_getaddrinfo)


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
