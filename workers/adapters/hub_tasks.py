"""The model-ZIP extraction task: an uploaded save_pretrained ZIP becomes a checked folder.

Like dataset ingest, the web tier checks what it can without unpacking (the central directory)
and queues this task; the bytes are counted while they are written (workers.hf.modelzip), and a
refusal leaves no folder, only the row's reason for its owner.
"""

from __future__ import annotations

from pathlib import Path

from webapp.celery import MODELZIP_TASK, app
from webapp.hub import services
from webapp.hub.models import LocalModel


@app.task(name=MODELZIP_TASK)
def extract_model_zip(model_id: str) -> str:
    from workers.hf.modelzip import ModelZipError, extract_model_zip as extract

    model = LocalModel.objects.filter(pk=model_id, status=LocalModel.Status.EXTRACTING).first()
    if model is None or not model.zip_path.exists():
        return services.finish_extraction(model_id, None, "the uploaded ZIP is gone") if model else "gone"
    # A redelivery (the worker died after the folder was in place, before the row said so)
    # starts again from the ZIP.
    services.remove_folder(Path(model.path))
    try:
        result = extract(model.zip_path, Path(model.path))
    except ModelZipError as exc:
        return services.finish_extraction(model.pk, None, str(exc))
    except Exception as exc:
        services.finish_extraction(model.pk, None, f"internal error while unpacking the ZIP ({type(exc).__name__})")
        raise
    if services.finish_extraction(model.pk, result) == "gone":  # deleted while it was unpacking
        services.remove_folder(Path(model.path))
        return "gone"
    return "ready"
