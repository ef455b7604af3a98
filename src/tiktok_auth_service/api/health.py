"""Liveness and readiness probes, and the Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response

from tiktok_auth_service import errors
from tiktok_auth_service.api.deps import ServiceDep, service_of
from tiktok_auth_service.api.problems import problem_responses
from tiktok_auth_service.metrics import CONTENT_TYPE

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


@router.get("/healthz", summary="Liveness probe", response_model=Health)
async def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@router.get(
    "/readyz",
    summary="Readiness probe",
    response_model=Health,
    responses=problem_responses(errors.DatabaseUnavailable),
)
async def readyz(service: ServiceDep) -> Health:
    """The database answers."""
    if not await service.database_ready():
        raise errors.DatabaseUnavailable()
    return Health(status="ready")


# Not in the OpenAPI document: it is for Prometheus, not for API callers, and needs no key
# (serve it on an internal port or deny it at the load balancer; see README).
@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition of every server process's metrics."""
    body = await service_of(request).render_metrics()
    return Response(body, media_type=CONTENT_TYPE)
