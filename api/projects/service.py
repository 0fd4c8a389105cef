from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from ..auth import Scope, hash_key, new_key
from ..errors import Conflict, NotFound
from ..models import ApiKey, Budget, Project, utcnow
from . import repository
from .schemas import KeyIssued, KeyOut, ProjectCreate, ProjectCreated, ProjectOut


def get_project(session: Session, project_id: uuid.UUID) -> Project:
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound("project not found")
    return project


def issue_key(session: Session, project: Project, scope: Scope, name: str | None) -> KeyIssued:
    key, prefix = new_key()
    row = ApiKey(
        project_id=project.id,
        name=name,
        prefix=prefix,
        secret_hash=hash_key(key),
        scope=scope.value,
    )
    session.add(row)
    session.flush()
    return KeyIssued.model_validate({**KeyOut.model_validate(row).model_dump(), "key": key})


def create_project(session: Session, body: ProjectCreate) -> ProjectCreated:
    if session.scalar(repository.project_by_name(body.name)) is not None:
        raise Conflict(f"a project named {body.name!r} already exists")
    project = Project(name=body.name)
    session.add(project)
    session.flush()
    if body.budget_kg_co2 is not None:
        session.add(
            Budget(
                project_id=project.id, group_name="", period="all", limit_kg_co2=body.budget_kg_co2
            )
        )
    return ProjectCreated(
        project=ProjectOut.model_validate(project),
        write_key=issue_key(session, project, Scope.write, "default write"),
        read_key=issue_key(session, project, Scope.read, "default read"),
    )


def list_projects(session: Session) -> list[ProjectOut]:
    return [ProjectOut.model_validate(p) for p in session.scalars(repository.all_projects())]


def list_keys(session: Session, project_id: uuid.UUID) -> list[KeyOut]:
    get_project(session, project_id)
    keys = session.scalars(repository.keys_of_project(project_id))
    return [KeyOut.model_validate(key) for key in keys]


def revoke_key(session: Session, project_id: uuid.UUID, key_id: uuid.UUID) -> KeyOut:
    key = session.get(ApiKey, key_id)
    if key is None or key.project_id != project_id:
        raise NotFound("key not found in this project")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    return KeyOut.model_validate(key)
