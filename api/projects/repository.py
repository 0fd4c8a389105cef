from __future__ import annotations

import uuid

from sqlalchemy import Select, select

from ..models import ApiKey, Project


def project_by_name(name: str) -> Select[Project]:
    return select(Project).where(Project.name == name)


def keys_of_project(project_id: uuid.UUID) -> Select[ApiKey]:
    return select(ApiKey).where(ApiKey.project_id == project_id).order_by(ApiKey.created_at)


def all_projects() -> Select[Project]:
    return select(Project).order_by(Project.name)
