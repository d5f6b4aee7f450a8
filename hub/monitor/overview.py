"""The overview: the console's landing page."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from hub.monitor.web import Viewer, render, viewer

router = APIRouter(prefix="/monitor", include_in_schema=False)


@router.get("/")
def overview(request: Request, seen: Viewer = Depends(viewer("console:overview"))):
    return render(request, seen, "overview.html")
