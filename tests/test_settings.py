"""Settings: the signing key is configured, or generated once in development; production
refuses to run without one."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from crm_graphql.app import build_app
from crm_graphql.settings import (
    ConfigurationError,
    Settings,
    new_encryption_key_entry,
    resolve_secret_key,
)


def _settings(data_dir: Path, **values: object) -> Settings:
    # Every value explicit, so CRM_* variables of the caller's shell do not matter.
    return Settings(
        data_dir=data_dir,
        database_url="postgresql://postgres@127.0.0.1:1/unused",
        redis_url="redis://127.0.0.1:1/0",
        **values,  # type: ignore[arg-type]
    )


def test_production_without_key_raises(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "data", env="production", secret_key=None)
    with pytest.raises(ConfigurationError, match="CRM_SECRET_KEY"):
        resolve_secret_key(settings)
    # Nothing was generated as a fallback.
    assert not (tmp_path / "data" / "secret_key").exists()


def test_development_generates_a_private_key_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh" / "data"  # does not exist yet
    settings = _settings(data_dir, env="development", secret_key=None)
    key = resolve_secret_key(settings)
    assert len(key) >= 32
    path = data_dir / "secret_key"
    assert path.read_text().strip() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Next start (a new Settings, same data dir): the same key, so tokens stay valid.
    again = resolve_secret_key(_settings(data_dir, env="development", secret_key=None))
    assert again == key
    # Another data directory gets a key of its own.
    other = resolve_secret_key(_settings(tmp_path / "other", env="development", secret_key=None))
    assert other != key


def test_configured_key_wins(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    generated = resolve_secret_key(_settings(data_dir, env="development", secret_key=None))
    configured = "configured-" + "k" * 40
    for env in ("development", "test", "production"):
        settings = _settings(data_dir, env=env, secret_key=configured)
        assert resolve_secret_key(settings) == configured
    # The stored development key is left alone.
    assert (data_dir / "secret_key").read_text().strip() == generated


def test_settings_read_crm_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CRM_ENV", "production")
    monkeypatch.setenv("CRM_SECRET_KEY", "from-the-environment")
    monkeypatch.setenv("CRM_DATA_DIR", str(tmp_path))
    settings = Settings()
    assert settings.is_production
    assert resolve_secret_key(settings) == "from-the-environment"


def test_build_app_refuses_production_without_key(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "data", env="production", secret_key=None)
    with pytest.raises(ConfigurationError, match="CRM_SECRET_KEY"):
        build_app(settings)
    # With keys the same settings build an app (the lifespan, not build_app, connects).
    keys = {"secret_key": "s" * 40, "encryption_keys": [new_encryption_key_entry()]}
    assert build_app(settings.model_copy(update=keys)) is not None


def test_trusted_proxies_are_addresses_or_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRM_TRUSTED_PROXIES", raising=False)
    assert Settings().trusted_proxies == []  # none unless configured
    monkeypatch.setenv("CRM_TRUSTED_PROXIES", "10.0.0.7, 10.1.2.3/8 ::1")
    assert Settings().trusted_proxies == ["10.0.0.7", "10.0.0.0/8", "::1"]
    monkeypatch.setenv("CRM_TRUSTED_PROXIES", '["*"]')
    assert Settings().trusted_proxies == ["*"]
    monkeypatch.setenv("CRM_TRUSTED_PROXIES", "10.0.0.7,proxy.internal")
    with pytest.raises(ValueError, match=r"proxy\.internal"):
        Settings()


def test_gc_thresholds_are_three_positive_integers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_GC_THRESHOLDS", "10000, 10, 10")
    assert Settings().gc_thresholds == (10_000, 10, 10)
    monkeypatch.setenv("CRM_GC_THRESHOLDS", "[20000, 5, 10]")
    assert Settings().gc_thresholds == (20_000, 5, 10)
    for wrong in ("10000,10", "10000,0,10", "many,10,10"):
        monkeypatch.setenv("CRM_GC_THRESHOLDS", wrong)
        with pytest.raises(ValueError, match="CRM_GC_THRESHOLDS: three integers"):
            Settings()


async def test_a_started_app_sets_its_gc_thresholds(settings: Settings) -> None:
    import gc

    from tests import support

    before = gc.get_threshold()
    try:
        async with support.app_client(settings, gc_thresholds=(12_345, 7, 9)):
            assert gc.get_threshold() == (12_345, 7, 9)
    finally:
        gc.set_threshold(*before)


def test_a_pool_too_small_for_what_the_process_runs_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A job's progress report takes a second connection of the requests' pool while the
    import's transaction holds the first: a pool of one is refused where jobs run, and
    the error names the variable."""
    monkeypatch.setenv("CRM_DB_POOL_SIZE", "1")
    monkeypatch.setenv("CRM_DATA_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="CRM_DB_POOL_SIZE must be at least 2"):
        Settings()
    monkeypatch.setenv("CRM_JOB_RUNNER", "false")
    assert Settings().db_pool_size == 1
    monkeypatch.setenv("CRM_DB_POOL_SIZE", "0")
    with pytest.raises(ValueError, match="CRM_DB_POOL_SIZE must be at least 1"):
        Settings()
