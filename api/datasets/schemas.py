from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict


class DatasetProfileOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    version: str
    num_classes: int
    sample_count: int | None
    class_counts: list[int] | None
    entropy_bits: float
    created_at: datetime
