"""Encryption at rest: AES-256-GCM values name their key, so keys rotate; the key
configuration is checked, generated once in development and required in production."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from crm_graphql.app import build_app
from crm_graphql.crypto import DecryptionError, Keyring, KeyringError, key_id
from crm_graphql.settings import (
    ConfigurationError,
    Settings,
    new_encryption_key_entry,
    resolve_encryption_keys,
)
from tests.test_settings import _settings as settings_in


def _settings(data_dir: Path, **values: object) -> Settings:
    return settings_in(data_dir, secret_key="s" * 40, **values)


def test_values_round_trip_and_never_show_the_plaintext() -> None:
    ring = Keyring.from_entries([new_encryption_key_entry("a")])
    token = ring.encrypt("whsec_very-secret")
    assert token.startswith("v1:a:") and "very-secret" not in token
    assert ring.decrypt(token) == "whsec_very-secret"
    assert ring.encrypt("same") != ring.encrypt("same")  # fresh nonce each time
    assert ring.decrypt_json(ring.encrypt_json({"id": "X-1"})) == {"id": "X-1"}


def test_old_keys_decrypt_and_reencrypt_moves_values_to_the_current_key() -> None:
    a, b = new_encryption_key_entry("a"), new_encryption_key_entry("b")
    old = Keyring.from_entries([a]).encrypt("secret")
    both = Keyring.from_entries([b, a])
    assert both.decrypt(old) == "secret"
    assert not both.is_current(old)
    moved = both.reencrypt(old)
    assert key_id(moved) == "b" and both.reencrypt(moved) == moved
    only_b = Keyring.from_entries([b])
    assert only_b.decrypt(moved) == "secret"
    with pytest.raises(DecryptionError, match="'a'"):
        only_b.decrypt(old)


def test_tampered_or_foreign_values_do_not_decrypt() -> None:
    ring = Keyring.from_entries([new_encryption_key_entry("a")])
    token = ring.encrypt("secret")
    body = token.split(":", 2)[2]
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    with pytest.raises(DecryptionError):
        ring.decrypt(f"v1:a:{flipped}")
    with pytest.raises(DecryptionError):
        ring.decrypt("plain text")
    other = Keyring.from_entries([new_encryption_key_entry("a")])  # same id, other key
    with pytest.raises(DecryptionError):
        other.decrypt(token)


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([], "at least one"),
        (["nokey"], "kid:base64key"),
        (["a:" + base64.b64encode(b"short").decode()], "32 bytes"),
        (["bad id!:" + base64.b64encode(bytes(32)).decode()], "key id"),
        (["a:" + base64.b64encode(bytes(32)).decode()] * 2, "twice"),
        (["a:***"], "base64"),
    ],
)
def test_malformed_key_configuration_is_refused(entries: list[str], message: str) -> None:
    with pytest.raises(KeyringError, match=message):
        Keyring.from_entries(entries)


def test_keys_come_from_the_environment_as_a_list(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = new_encryption_key_entry("a"), new_encryption_key_entry("b")
    monkeypatch.setenv("CRM_ENCRYPTION_KEYS", f"{b}, {a}")
    assert Settings().encryption_keys == [b, a]
    monkeypatch.setenv("CRM_ENCRYPTION_KEYS", f'["{a}"]')
    assert Settings().encryption_keys == [a]


def test_development_generates_a_key_once_production_requires_one(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = resolve_encryption_keys(_settings(data_dir, env="development"))
    assert resolve_encryption_keys(_settings(data_dir, env="development")) == first
    Keyring.from_entries(first)  # a usable key
    assert stat.S_IMODE((data_dir / "encryption_key").stat().st_mode) == 0o600
    production = _settings(tmp_path / "prod", env="production")
    with pytest.raises(ConfigurationError, match="CRM_ENCRYPTION_KEYS"):
        resolve_encryption_keys(production)
    with pytest.raises(ConfigurationError, match="CRM_ENCRYPTION_KEYS"):
        build_app(production)
    assert not (tmp_path / "prod" / "encryption_key").exists()
    with pytest.raises(ConfigurationError, match="CRM_ENCRYPTION_KEYS"):
        build_app(production.model_copy(update={"encryption_keys": ["broken"]}))
