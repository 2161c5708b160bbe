"""Issue 15 hardening: HSTS options, per-installation channel prefix, private files, API tokens."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from tests.webapp.test_settings import ROOT, _manage, _settings_in_subprocess

pytestmark = pytest.mark.django_db


def test_hsts_seconds_no_longer_forces_subdomains_and_preload(tmp_path):
    env = {"TRAINYARD_DATA_DIR": str(tmp_path), "SECURE_HSTS_SECONDS": "3600"}
    assert _settings_in_subprocess(env, "(s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SECURE_HSTS_PRELOAD)") == "(False, False)"
    env |= {"SECURE_HSTS_INCLUDE_SUBDOMAINS": "1"}
    assert _settings_in_subprocess(env, "(s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SECURE_HSTS_PRELOAD)") == "(True, False)"


def test_channel_prefix_differs_per_installation_and_can_be_set(tmp_path):
    expr = "s.CHANNEL_LAYERS['default']['CONFIG']['prefix']"
    a = _settings_in_subprocess({"TRAINYARD_DATA_DIR": str(tmp_path / "a")}, expr)
    b = _settings_in_subprocess({"TRAINYARD_DATA_DIR": str(tmp_path / "b")}, expr)
    assert a != b and a == _settings_in_subprocess({"TRAINYARD_DATA_DIR": str(tmp_path / "a")}, expr)
    assert _settings_in_subprocess({"TRAINYARD_DATA_DIR": str(tmp_path), "TRAINYARD_CHANNEL_PREFIX": "site1"},
                                   expr) == "site1"


def test_database_and_data_dir_are_private(tmp_path):
    data = tmp_path / "inst"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    _manage({"TRAINYARD_DATA_DIR": str(data), "SECRET_KEY": ""}, "migrate", "--noinput")
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(data) == 0o700 and mode(data / "tmp") == 0o700
    assert mode(data / "trainyard.sqlite3") == 0o600
    for extra in data.glob("trainyard.sqlite3-*"):  # WAL / shared-memory files
        assert mode(extra) & 0o077 == 0


def _api(key: str, scheme: str = "Token") -> int:
    return Client(HTTP_AUTHORIZATION=f"{scheme} {key}").get("/api/jobs/").status_code


def test_tokens_are_hashed_named_revocable_and_accept_bearer(alice, bob):
    from webapp.accounts.models import ApiToken
    from webapp.accounts.tokens import create_token, revoke_token

    token, key = create_token(alice, "laptop", "30")
    assert key.startswith("ty_") and not ApiToken.objects.filter(digest=key).exists()
    assert key not in str(list(ApiToken.objects.values_list("digest", "token_key", "name")))
    assert _api(key) == 200 and _api(key, "Bearer") == 200 and _api(key + "x") == 401
    assert token.expiry - timezone.now() > timedelta(days=29)
    second, key2 = create_token(alice, "ci", "never")
    assert second.expiry is None and ApiToken.objects.filter(user=alice).count() == 2
    assert not revoke_token(bob, token.token_key)  # bob cannot revoke alice's token
    assert revoke_token(alice, token.token_key)
    assert _api(key) == 401 and _api(key2) == 200


def test_expired_token_is_refused(alice):
    from webapp.accounts.models import ApiToken
    from webapp.accounts.tokens import create_token

    token, key = create_token(alice, "old", "30")
    ApiToken.objects.filter(pk=token.pk).update(expiry=timezone.now() - timedelta(seconds=1))
    assert _api(key) == 401


def test_password_change_revokes_every_token(alice):
    from webapp.accounts.tokens import create_token

    keys = [create_token(alice, f"t{i}", "never")[1] for i in range(2)]
    c = Client()
    c.force_login(alice)
    r = c.post("/accounts/password/", {"old_password": "pw-alice-123", "new_password1": "An0ther-long-pass",
                                       "new_password2": "An0ther-long-pass"})
    assert r.status_code == 302
    assert [_api(k) for k in keys] == [401, 401]


def test_profile_lists_tokens_without_keys_and_revokes(alice, bob):
    from webapp.accounts.tokens import create_token

    token, key = create_token(alice, "laptop", "never")
    other, other_key = create_token(bob, "bobs", "never")
    c = Client()
    c.force_login(alice)
    html = c.get("/account/profile/").content.decode()
    assert "laptop" in html and token.token_key in html and key not in html and "bobs" not in html
    c.post("/account/token/revoke/", {"token": other.token_key})
    assert _api(other_key) == 200  # someone else's token: nothing happens
    c.post("/account/token/revoke/", {"token": token.token_key})
    assert _api(key) == 401


def test_admin_does_not_show_token_keys(staff, alice):
    from webapp.accounts.tokens import create_token

    _, key = create_token(alice, "laptop", "never")
    c = Client()
    c.force_login(staff)
    for path in ["/admin/", "/admin/accounts/apitoken/", "/admin/authtoken/tokenproxy/"]:
        assert key not in c.get(path).content.decode()


def test_check_deploy_enforces_the_checklist(tmp_path):
    (tmp_path / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in {"DATABASE_URL", "TRAINYARD_CHANNEL_PREFIX", "TRAINYARD_MAX_REQUEST_MB", "TRAINYARD_PROXY_COUNT"}} | {
        "DJANGO_SETTINGS_MODULE": "webapp.settings", "TRAINYARD_DATA_DIR": str(tmp_path), "DEBUG": "0",
        "SECRET_KEY": "prod-" + "k8Zq3vX9pL2mN7" * 5, "BEHIND_TLS_PROXY": "1", "ALLOWED_HOSTS": "ty.example"}
    r = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    out = r.stdout + r.stderr
    for check in ("trainyard.W001", "trainyard.W002", "trainyard.W003", "trainyard.W004"):
        assert check in out, out


@pytest.mark.django_db(transaction=True)
def test_plain_drf_tokens_are_migrated_to_hashes_and_keep_working(alice):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.migrate([("accounts", "0002_notification_settings")])
    key = "0123456789abcdef0123456789abcdef01234567"  # a DRF key: 40 hex characters
    with connection.cursor() as c:
        c.execute("CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamp NOT NULL, "
                  "user_id integer NOT NULL)")
        c.execute("INSERT INTO authtoken_token VALUES (%s, %s, %s)", [key, "2026-01-02 03:04:05", alice.pk])
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert "authtoken_token" not in connection.introspection.table_names()  # no plain key left
    assert _api(key) == 200 and _api(key, "Bearer") == 200
