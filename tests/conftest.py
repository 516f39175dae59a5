import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """No test reads or writes the user's real cache."""
    monkeypatch.setenv("RBFT_CACHE_DIR", str(tmp_path / "rbft-cache"))
