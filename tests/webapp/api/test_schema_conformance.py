"""The OpenAPI schema tells the truth: schemathesis sends generated requests (valid ones and
invalid ones) to every operation, signed in with a token, and every answer must have a documented
status code and media type and a body that matches its schema; nothing may answer 5xx.

Bounded (a fixed number of derandomised cases per operation and mode), so `make test` runs it;
`make test-fast` leaves it out (marker `schema`).
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.webapp.factories import finished_job, ready_dataset

pytestmark = [pytest.mark.django_db, pytest.mark.schema]

CASES = 25  # per operation and generation mode (derandomized: the same cases every run)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]


def api_token(user) -> str:
    """A token key for `user`, made the way the profile page makes one."""
    from tests.webapp.factories import api_token as make

    return make(user)


@pytest.fixture
def wsgi_app():
    """Django's WSGI app, without closing the database connection after each request (as
    Django's test Client does): the test's transaction must survive the calls."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def _run(operation, mode: GenerationMode, headers: dict, failures: list, ids: dict | None = None) -> None:
    @given(case=operation.as_strategy(generation_mode=mode, path_parameters=ids))
    @settings(max_examples=CASES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    def run(case):
        case.call_and_validate(headers=headers, checks=CHECKS)

    try:
        run()
    except Unsatisfiable:
        assert mode == GenerationMode.NEGATIVE  # nothing to make invalid: no parameters, no body
    except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collected: one report for all operations
        failures.append(f"{operation.label} [{mode.value}{', known ids' if ids else ''}]: {exc}")


def test_every_operation_answers_as_documented(alice, bob, sent_tasks, wsgi_app):
    ds = ready_dataset(alice)
    ds.shared_with.add(bob)
    job = finished_job(alice, ds)
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", wsgi_app)
    headers = {"Authorization": f"Token {api_token(alice)}"}
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _run(operation, mode, headers, failures)
        # Random ids mostly meet 404s: also run on the objects that exist (alice's dataset and job;
        # the artifact names and the other ids stay generated).
        if "{id}" in operation.path and operation.path.startswith(("/api/datasets/", "/api/jobs/")):
            known = str(ds.pk if operation.path.startswith("/api/datasets/") else job.pk)
            _run(operation, GenerationMode.POSITIVE, headers, failures, ids={"id": known})
    assert not failures, "\n\n".join(failures)
