from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from webapp.datasets import services
from webapp.datasets.uploads import upload_too_large_message
from webapp.datasets.validation import DatasetError
from webapp.jobs.access import datasets_for, get_dataset_for_user


def dataset_list(request):
    ctx = {"datasets": datasets_for(request.user)[:500], "errors": [], "values": {}}
    if request.method == "POST":
        try:
            uploaded = request.FILES.get("file")  # parses the body; the size check runs while streaming
            if getattr(request, "upload_too_large", False):
                raise DatasetError(upload_too_large_message())
            ds = services.create_dataset(
                request.user, uploaded, name=request.POST.get("name", ""),
                description=request.POST.get("description", ""),
                label_column=request.POST.get("label_column", ""),
                val_fraction=request.POST.get("val_fraction"),
            )
        except DatasetError as exc:
            ctx.update(errors=[str(exc)], values=request.POST)
            return render(request, "datasets/list.html", ctx, status=400)
        messages.success(request, f"Uploaded “{ds.name}”; checking it now.")
        return redirect("datasets:detail", pk=ds.pk)
    return render(request, "datasets/list.html", ctx)


def dataset_detail(request, pk):
    ds = get_dataset_for_user(request.user, pk)
    info = ds.info or {}
    classes = sorted((info.get("class_counts") or {}).items(), key=lambda kv: -kv[1])
    top = max([c for _, c in classes] or [1])
    bars = [{"name": k, "count": v, "pct": round(100 * v / top)} for k, v in classes]
    return render(request, "datasets/detail.html", {"ds": ds, "info": info, "bars": bars})


@require_POST
def dataset_delete(request, pk):
    ds = get_dataset_for_user(request.user, pk, write=True)
    name = ds.name
    services.delete_dataset(ds)
    messages.success(request, f"Dataset “{name}” deleted.")
    return redirect("datasets:list")
