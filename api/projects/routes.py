from __future__ import annotations

import uuid

from fastapi import APIRouter

from ..deps import AdminDep, ReaderDep, SessionDep
from ..errors import ERROR_RESPONSES, NotFound
from . import service
from .schemas import KeyCreate, KeyIssued, KeyOut, ProjectCreate, ProjectCreated, ProjectOut

router = APIRouter(prefix="/api/v1/projects", tags=["projects"], responses=ERROR_RESPONSES)


@router.post("", status_code=201, response_model=ProjectCreated)
def create_project(body: ProjectCreate, session: SessionDep, _admin: AdminDep) -> ProjectCreated:
    """Create a project and return its first write key and read key (shown only once).

    Needs the admin token as the bearer.
    """
    return service.create_project(session, body)


@router.get("", response_model=list[ProjectOut])
def list_projects(session: SessionDep, _admin: AdminDep) -> list[ProjectOut]:
    """Every project (admin token)."""
    return service.list_projects(session)


@router.get("/{project_id}", response_model=ProjectOut)
def get_project(project_id: uuid.UUID, session: SessionDep, caller: ReaderDep) -> ProjectOut:
    """The project a key belongs to."""
    if project_id != caller.project_id:
        raise NotFound("project not found")
    return ProjectOut.model_validate(service.get_project(session, project_id))


@router.post("/{project_id}/keys", status_code=201, response_model=KeyIssued)
def create_key(
    project_id: uuid.UUID, body: KeyCreate, session: SessionDep, _admin: AdminDep
) -> KeyIssued:
    """Issue another key for a project (admin token)."""
    project = service.get_project(session, project_id)
    return service.issue_key(session, project, body.scope, body.name)


@router.get("/{project_id}/keys", response_model=list[KeyOut])
def list_keys(project_id: uuid.UUID, session: SessionDep, _admin: AdminDep) -> list[KeyOut]:
    """A project's keys, by prefix; the keys themselves are never stored (admin token)."""
    return service.list_keys(session, project_id)


@router.post("/{project_id}/keys/{key_id}/revoke", response_model=KeyOut)
def revoke_key(
    project_id: uuid.UUID, key_id: uuid.UUID, session: SessionDep, _admin: AdminDep
) -> KeyOut:
    """Revoke a key at once; later requests with it get 401 (admin token)."""
    return service.revoke_key(session, project_id, key_id)
