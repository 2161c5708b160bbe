"""CSRF on every POST form (a template scan, so a new form without a token fails) and secure,
HttpOnly cookies with production settings."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORM = re.compile(r"<form\b[^>]*>(.*?)</form>", re.S | re.I)


def test_every_post_form_carries_a_csrf_token():
    templates = [p for d in ("templates", "webapp") for p in (ROOT / d).rglob("*.html")]
    assert templates
    missing, forms = [], 0
    for path in templates:
        text = path.read_text()
        for m in FORM.finditer(text):
            opening = m.group(0)[: m.group(0).index(">") + 1]
            if 'method="get"' in opening.lower() or "method='get'" in opening.lower():
                continue
            forms += 1
            if "{% csrf_token %}" not in m.group(1):
                line = text[: m.start()].count("\n") + 1
                missing.append(f"{path.relative_to(ROOT)}:{line}")
    assert forms > 5 and missing == []


def test_cookies_are_secure_and_httponly_in_production(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {
        "DJANGO_SETTINGS_MODULE": "webapp.settings", "TRAINYARD_DATA_DIR": str(tmp_path),
        "SECRET_KEY": "prod-" + "k8Zq3vX9pL2mN7" * 5, "DEBUG": "0", "SECURE_SSL_REDIRECT": "1",
        "SECURE_COOKIES": "1", "SECURE_HSTS_SECONDS": "31536000", "ALLOWED_HOSTS": "trainyard.example",
    }
    code = ("import json, django; django.setup(); from django.conf import settings as s; print(json.dumps({k: "
            "getattr(s, k) for k in ['SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SESSION_COOKIE_HTTPONLY', "
            "'SESSION_COOKIE_SAMESITE', 'SECURE_SSL_REDIRECT', 'SECURE_HSTS_SECONDS', 'DEBUG']}))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got == {"SESSION_COOKIE_SECURE": True, "CSRF_COOKIE_SECURE": True, "SESSION_COOKIE_HTTPONLY": True,
                   "SESSION_COOKIE_SAMESITE": "Lax", "SECURE_SSL_REDIRECT": True, "SECURE_HSTS_SECONDS": 31536000,
                   "DEBUG": False}
