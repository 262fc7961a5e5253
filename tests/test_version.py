"""fastmdm.__version__ comes from the installed distribution's metadata, with a fallback for a source tree."""
from __future__ import annotations

import importlib
import importlib.metadata

import pytest

import fastmdm


@pytest.fixture
def reimport(monkeypatch):
    """Re-runs fastmdm/__init__.py under the test's patches, then once more after undoing them."""
    yield lambda: importlib.reload(fastmdm).__version__
    monkeypatch.undo()  # before the reload: this fixture is torn down before monkeypatch itself
    importlib.invalidate_caches()
    importlib.reload(fastmdm)


def test_the_version_is_the_installed_distribution_s(tmp_path, monkeypatch, reimport):
    # a distribution found first on sys.path is the one importlib.metadata reports, as after `pip install`
    dist = tmp_path / "fastmdm-9.8.7.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fastmdm\nVersion: 9.8.7\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    assert reimport() == "9.8.7"


def test_a_source_tree_that_was_never_installed_says_so(monkeypatch, reimport):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert reimport() == "0+unknown"


def test_the_version_matches_the_environment():
    try:
        want = importlib.metadata.version("fastmdm")
    except importlib.metadata.PackageNotFoundError:
        want = "0+unknown"
    assert fastmdm.__version__ == want
