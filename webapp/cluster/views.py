from __future__ import annotations

from django.http import JsonResponse
from django.shortcuts import render

from webapp.cluster.state import cluster_state

POLL_SECONDS = 3


def cluster_page(request):
    """Workers, their devices, what runs where and the queue; the page polls cluster_json."""
    return render(request, "cluster/page.html", {"state": cluster_state(request.user), "poll_seconds": POLL_SECONDS})


def cluster_json(request):
    return JsonResponse(cluster_state(request.user))
