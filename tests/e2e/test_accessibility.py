"""axe-core (vendored in tests/e2e/vendor/axe-core, no network) on every page a signed-in user can
reach, in light and dark mode, at desktop and 390 px width: no serious or critical violation.

The scan injects axe into the page, so these contexts bypass the Content-Security-Policy (it
forbids inline and injected scripts); the pages themselves are unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import datagen
from tests.e2e.test_ui_flow import sign_in
from tests.integration.test_try_model import train
from tests.stack import write_separable_csv

pytestmark = [pytest.mark.stack, pytest.mark.e2e]

AXE = Path(__file__).with_name("vendor") / "axe-core" / "axe.min.js"
MODES = [("light", 1280), ("dark", 1280), ("light", 390), ("dark", 390)]
BLOCKING = ("serious", "critical")


def _pages(stack, api, tmp_path) -> dict[str, str]:
    table_job = train(stack, api, write_separable_csv(tmp_path / "a11y.csv", n=200), "tabular", "mlp", epochs=1)
    image_job = train(stack, api, datagen.digits_png_zip(tmp_path / "a11y.zip", limit=80), "image", "cnn", epochs=1)
    job = api.get(stack.url(f"/api/jobs/{table_job}/")).json()
    dataset = job["dataset"]
    r = api.post(stack.url("/api/sweeps/"), json={
        "dataset": dataset, "architecture": "mlp", "metric": "loss", "budget": 1, "concurrency": 1,
        "train_config": {"epochs": 1}, "space": {"train.learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2}}})
    assert r.status_code == 201, r.text
    sweep = r.json()["id"]
    return {
        "jobs list": "/jobs/", "new job": f"/jobs/new/?dataset={dataset}", "job": f"/jobs/{table_job}/",
        "image job": f"/jobs/{image_job}/", "compare": f"/jobs/compare/?ids={table_job}&ids={image_job}",
        "model card": f"/jobs/{table_job}/model-card/", "try a table": f"/jobs/{table_job}/try/",
        "try an image": f"/jobs/{image_job}/try/", "datasets and upload": "/datasets/",
        "dataset": f"/datasets/{dataset}/", "models": "/models/", "sweeps": "/sweeps/", "new sweep": "/sweeps/new/",
        "sweep": f"/sweeps/{sweep}/", "cluster": "/cluster/", "account": "/account/profile/", "password": "/accounts/password/",
    }


def _scan(page) -> list[dict]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("""async () => {
        const r = await axe.run(document, { resultTypes: ["violations"] });
        return r.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help,
                                        nodes: v.nodes.slice(0, 5).map(n => n.target.join(" ") + " :: " + n.failureSummary) }));
    }""")
    return [v for v in result if v["impact"] in BLOCKING]


def test_every_page_has_no_serious_or_critical_violation(browser, stack, tmp_path):
    api = stack.api("alice")
    pages = _pages(stack, api, tmp_path)
    problems = []
    for scheme, width in MODES:
        context = browser.new_context(viewport={"width": width, "height": 900}, color_scheme=scheme, bypass_csp=True)
        page = context.new_page()
        if (scheme, width) == MODES[0]:  # the sign-in page, as everyone first sees it
            page.goto(stack.url("/accounts/login/"))
            problems += [(scheme, width, "sign in", v) for v in _scan(page)]
        sign_in(page, stack)
        for name, path in pages.items():
            page.goto(stack.url(path))
            page.wait_for_load_state("networkidle")
            problems += [(scheme, width, name, v) for v in _scan(page)]
        context.close()
    report = "\n".join(f"{s} {w}px {name}: {v['impact']} {v['id']} ({v['help']})\n    " + "\n    ".join(v["nodes"])
                       for s, w, name, v in problems)
    assert not problems, "axe-core violations:\n" + report
