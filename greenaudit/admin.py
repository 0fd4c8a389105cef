"""Small admin-token helpers shared by ``greenaudit demo`` and ``greenaudit import``."""

from __future__ import annotations

from greenaudit.errors import ServiceError
from greenaudit.http import ADMIN_TOKEN_HINT, ServiceHttp


def project_keys(url: str, admin_token: str, name: str) -> tuple[str, str]:
    """A write key and a read key for project ``name``, creating the project if needed.

    For an existing project, fresh keys are issued (keys are stored hashed and never shown
    twice). Raises :class:`~greenaudit.errors.ServiceError` when the service cannot be reached
    or refuses.
    """
    with ServiceHttp(url, admin_token, key_hint=ADMIN_TOKEN_HINT) as admin:
        try:
            created = admin.request("POST", "/projects", json={"name": name})
            if created.status_code == 201:
                body = created.json()
                return body["write_key"]["key"], body["read_key"]["key"]
        except ServiceError as error:
            if error.status_code != 409:  # 409: it exists, so it gets fresh keys below
                raise
        project_id = next(p["id"] for p in admin.get("/projects") if p["name"] == name)
        keys = [
            admin.post(
                f"/projects/{project_id}/keys", {"scope": scope, "name": f"{name} ({scope})"}
            )["key"]
            for scope in ("write", "read")
        ]
        return keys[0], keys[1]
