"""Small admin-token helpers shared by ``greenaudit demo`` and ``greenaudit import``."""

from __future__ import annotations

import httpx


def project_keys(url: str, admin_token: str, name: str) -> tuple[str, str]:
    """A write key and a read key for project ``name``, creating the project if needed.

    For an existing project, fresh keys are issued (keys are stored hashed and never shown
    twice). Raises ``httpx.HTTPStatusError`` when the service refuses.
    """
    admin = {"Authorization": f"Bearer {admin_token}"}
    base = url.rstrip("/")
    created = httpx.post(f"{base}/api/v1/projects", json={"name": name}, headers=admin)
    if created.status_code == 201:
        body = created.json()
        return body["write_key"]["key"], body["read_key"]["key"]
    if created.status_code != 409:
        created.raise_for_status()
    listed = httpx.get(f"{base}/api/v1/projects", headers=admin)
    listed.raise_for_status()
    project_id = next(p["id"] for p in listed.json() if p["name"] == name)
    keys = []
    for scope in ("write", "read"):
        issued = httpx.post(
            f"{base}/api/v1/projects/{project_id}/keys",
            json={"scope": scope, "name": f"{name} ({scope})"},
            headers=admin,
        )
        issued.raise_for_status()
        keys.append(issued.json()["key"])
    return keys[0], keys[1]
