from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from ..auth import Scope, hash_key, new_key
from ..errors import Conflict, NotFound
from ..idempotent import insert_if_absent
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
    """Create a project with its first two keys; a name already taken is a conflict.

    Not answered as a retry (200) like other creates: the keys are shown only once, so a
    second create of a name can only be refused, and it is refused the same way when the two
    arrive at the same moment.
    """
    project_id = uuid.uuid4()
    if not insert_if_absent(session, Project, {"id": project_id, "name": body.name}, ["name"]):
        raise Conflict(f"a project named {body.name!r} already exists")
    project = session.get_one(Project, project_id)
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
