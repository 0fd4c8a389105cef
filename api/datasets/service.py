from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from greenaudit.analytics.entropy import label_entropy_bits, uniform_entropy_bits
from greenaudit.schemas import DatasetProfileIn

from ..auth import Principal
from ..errors import Conflict
from ..idempotent import insert_if_absent
from ..models import DatasetProfile
from .schemas import DatasetProfileOut


def put_profile(
    session: Session, caller: Principal, body: DatasetProfileIn
) -> tuple[DatasetProfileOut, bool]:
    """Store a dataset's profile once per (name, version); returns it and whether it is new.

    Sending the same profile again, or at the same moment from several ranks, answers with
    the stored one; a different profile under the same name and version is a conflict.
    """
    if body.class_counts is not None:
        num_classes = sum(1 for count in body.class_counts if count > 0)
        entropy_bits = label_entropy_bits(body.class_counts)
        sample_count: int | None = (
            body.sample_count if body.sample_count is not None else sum(body.class_counts)
        )
    else:
        assert body.num_classes is not None
        num_classes, entropy_bits, sample_count = (
            body.num_classes,
            uniform_entropy_bits(body.num_classes),
            body.sample_count,
        )
    values = {
        "project_id": caller.project_id,
        "name": body.name,
        "version": body.version,
        "num_classes": num_classes,
        "sample_count": sample_count,
        "entropy_bits": entropy_bits,
    }
    if body.class_counts is not None:  # left out, it is SQL NULL, not the JSON value null
        values["class_counts"] = body.class_counts
    created = insert_if_absent(session, DatasetProfile, values, ["project_id", "name", "version"])
    stored = session.scalars(
        select(DatasetProfile).where(
            DatasetProfile.project_id == caller.project_id,
            DatasetProfile.name == body.name,
            DatasetProfile.version == body.version,
        )
    ).one()
    if not created and (stored.class_counts, stored.num_classes, stored.sample_count) != (
        body.class_counts,
        num_classes,
        sample_count,
    ):
        raise Conflict(
            f"dataset {body.name!r} version {body.version!r} already has a different "
            "profile; give the changed dataset a new version"
        )
    return DatasetProfileOut.model_validate(stored), created


def list_profiles(session: Session, caller: Principal, name: str | None) -> list[DatasetProfileOut]:
    query = select(DatasetProfile).where(DatasetProfile.project_id == caller.project_id)
    if name is not None:
        query = query.where(DatasetProfile.name == name)
    rows = session.scalars(query.order_by(DatasetProfile.name, DatasetProfile.version))
    return [DatasetProfileOut.model_validate(row) for row in rows]
