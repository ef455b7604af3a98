"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from tiktok_auth_service import errors
from tiktok_auth_service.api.deps import ServiceDep
from tiktok_auth_service.api.problems import problem_responses

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
