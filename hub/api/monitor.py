"""The monitor's data for other tools, under /api/v1/monitor (API tokens): the same functions as the console's
pages (hub/monitor), answered as JSON."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool

from hub.access.tokens import Identity
from hub.api.auth import allowed
from hub.monitor.overview import overview_for

router = APIRouter(prefix="/api/v1/monitor", tags=["monitor"])


@router.get("/overview", summary="The monitor's overview: the hub's health, each partner's figures, the 24 h "
                                 "throughput and the apps' service tiles",
            responses={200: {"description": "`partners` and `series` are null for roles without messages:read. "
                                            "Windows are 15m, 1h and 24h; messages_in are those the partner sent, "
                                            "messages_out those addressed to it; times are UTC (ISO 8601); the "
                                            "circuit is the answering process's; `services` are the apps' tiles "
                                            "this caller may see"}})
async def overview_api(request: Request, identity: Identity = Depends(allowed("console:overview"))):
    found = await run_in_threadpool(overview_for, request, identity)
    return found.as_dict()
