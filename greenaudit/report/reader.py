"""The report's only HTTP: GET requests with a read key, each answer validated by a wire model."""

from __future__ import annotations

from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from greenaudit._version import __version__

from .model import ReportError

Answer = TypeVar("Answer", bound=BaseModel)


class ServiceReader:
    """A read key on one service: GET requests whose answers are checked and remembered.

    Every request made is appended to ``requests`` (path and query), so a report can list the
    questions that reproduce it. Use as a context manager; it holds one connection pool.
    """

    def __init__(self, url: str, api_key: str, timeout_s: float, requests: list[str]) -> None:
        self._base = url.rstrip("/")
        self._client = httpx.Client(
            base_url=self._base, headers={"Authorization": f"Bearer {api_key}"}, timeout=timeout_s
        )
        self.requests = requests

    def __enter__(self) -> ServiceReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._client.close()

    def get(self, path: str, params: dict[str, Any], shape: type[Answer]) -> Answer:
        """The answer to ``GET path?params`` (``None`` values left out), as ``shape``.

        Raises:
            ReportError: The service is unreachable, answered other than 200, or answered
                something ``shape`` does not accept.
        """
        query = {k: v for k, v in params.items() if v is not None}
        request = self._client.build_request("GET", path, params=query)
        # The report lists each request so a reader can ask the service the same questions.
        self.requests.append(f"GET {request.url.raw_path.decode()}")
        try:
            response = self._client.send(request)
        except httpx.HTTPError as error:
            raise ReportError(f"cannot reach {self._base}: {error}") from error
        if response.status_code != 200:
            raise ReportError(_refusal(response))
        try:
            return shape.model_validate_json(response.content)
        except ValidationError as error:
            raise ReportError(
                f"the service's answer to GET {path} is not what this greenaudit "
                f"({__version__}) expects: {error}"
            ) from error


def _refusal(response: httpx.Response) -> str:
    """A refused request, worded for a terminal."""
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    where = f"{response.request.method} {response.request.url.path}"
    if response.status_code == 401:
        return (
            f"the service refused the key (HTTP 401 on {where}): set GREENAUDIT_API_KEY to a "
            f"read or write key of the project ({detail})"
        )
    if response.status_code == 404:
        return f"not found (HTTP 404 on {where}): {detail}"
    return f"HTTP {response.status_code} on {where}: {detail}"
