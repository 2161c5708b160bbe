"""The MLflow push, on the `notify` queue (outbound network work, beside the webhooks): load the
row, build the plain spec, push under the connection rules, record the outcome."""

from __future__ import annotations

import logging

from webapp.celery import MLFLOW_EXPORT_TASK, app

log = logging.getLogger(__name__)


@app.task(name=MLFLOW_EXPORT_TASK)
def export_mlflow(export_id: str) -> str:
    from webapp.exports import services
    from workers.exports.mlflow_push import PushError, PushSpec, push

    export = services.claim_mlflow_export(export_id)
    if export is None:
        return "gone"
    try:
        spec = PushSpec(**services.push_spec(export))
        with services.outbound_guard():
            result = push(spec, services.metric_history(export.job_id, export.job.last_seq),
                          services.artifact_check(spec.tracking_uri))
    except (services.ExportError, PushError) as exc:
        services.finish_mlflow_export(export_id, error=services.user_message(exc), run_id=getattr(exc, "run_id", ""))
        return "failed"
    except Exception as exc:  # noqa: BLE001 - any failure becomes the export's readable error
        log.exception("MLflow export %s failed", export_id)
        services.finish_mlflow_export(export_id, error=f"the export failed unexpectedly ({type(exc).__name__})")
        return "failed"
    services.finish_mlflow_export(export_id, result=result)
    return "done"
