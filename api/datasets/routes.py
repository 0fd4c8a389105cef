from __future__ import annotations

from fastapi import APIRouter, Response

from greenaudit.schemas import DatasetProfileIn

from ..deps import ReaderDep, SessionDep, WriterDep
from ..errors import ERROR_RESPONSES
from ..params import OptionalName, created_or_stored
from . import service
from .schemas import DatasetProfileOut

router = APIRouter(prefix="/api/v1/datasets", tags=["datasets"], responses=ERROR_RESPONSES)


@router.post("/profiles", status_code=201, response_model=DatasetProfileOut)
def put_profile(
    body: DatasetProfileIn, response: Response, session: SessionDep, caller: WriterDep
) -> DatasetProfileOut:
    """Store a dataset's label distribution once per (name, version), with its entropy in bits.

    Answers 201 when new and 200 when the same profile is already stored.
    """
    return created_or_stored(response, service.put_profile(session, caller, body))


@router.get("/profiles", response_model=list[DatasetProfileOut])
def list_profiles(
    session: SessionDep,
    caller: ReaderDep,
    name: OptionalName = None,
) -> list[DatasetProfileOut]:
    """The project's dataset profiles."""
    return service.list_profiles(session, caller, name)
