from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from webapp.datasets import services as dataset_services
from webapp.datasets.uploads import upload_too_large_message
from webapp.datasets.validation import DatasetError
from webapp.hub import services
from webapp.hub.models import LocalModel
from webapp.projects.access import creatable_projects, resolve_for_create


def _context(request, **extra) -> dict:
    return {"models": services.models_for(request.user), "tasks": LocalModel.Task.choices, "errors": [],
            "projects": creatable_projects(request.user),
            "values": {}, **extra}


def model_list(request):
    """Registered and uploaded pretrained models; upload a save_pretrained folder as a ZIP."""
    if request.method == "POST":
        upload = None
        try:
            uploaded = request.FILES.get("file")
            if getattr(request, "upload_too_large", False):
                raise services.HubError(upload_too_large_message())
            if request.POST.get("upload"):
                try:
                    upload = dataset_services.upload_for(request.user, request.POST["upload"])
                except DatasetError as exc:
                    raise services.HubError(str(exc)) from None
            project, project_error = resolve_for_create(request.user, request.POST.get("project"))
            if project_error:
                raise services.HubError(f"project: {project_error}")
            model = services.upload_model(request.user, uploaded, upload=upload, name=request.POST.get("name", ""),
                                          project=project,
                                          task=request.POST.get("task", ""),
                                          description=request.POST.get("description", ""))
        except services.HubError as exc:
            if upload is not None:
                dataset_services.abort_upload(upload)
            return render(request, "hub/list.html", _context(request, errors=[str(exc)], values=request.POST),
                          status=400)
        messages.success(request, f"Model “{model.name}” uploaded; a worker is unpacking it. Once it shows as "
                                  f"ready, pick it as {model.reference}.")
        return redirect("hub:list")
    return render(request, "hub/list.html", _context(request))


@require_POST
def model_delete(request, pk):
    model = services.get_model_for_user(request.user, pk, write=True)
    services.delete_model(model, actor=request.user)
    messages.success(request, f"Model “{model.name}” deleted.")
    return redirect("hub:list")
