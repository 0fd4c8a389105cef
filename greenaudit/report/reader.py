"""The report's only HTTP: GET requests with a read key, each answer validated by a wire model."""

from __future__ import annotations

from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from greenaudit._version import __version__
from greenaudit.errors import ServiceError
from greenaudit.http import ServiceHttp

from .model import ReportError

Answer = TypeVar("Answer", bound=BaseModel)


class ServiceReader:
    """A read key on one service: GET requests whose answers are checked and remembered.

    Every request made is appended to ``requests`` (path and query), so a report can list the
    questions that reproduce it. Use as a context manager; it holds one connection pool of the
    client's one HTTP layer (:class:`greenaudit.http.ServiceHttp`).
    """

    def __init__(self, url: str, api_key: str, timeout_s: float, requests: list[str]) -> None:
        self.requests = requests
        try:
            self._http = ServiceHttp(url, api_key, timeout_s=timeout_s, on_request=self._note)
        except ServiceError as error:
            raise ReportError(str(error)) from error

    def _note(self, request: httpx.Request) -> None:
        # The report lists each request so a reader can ask the service the same questions.
        self.requests.append(f"{request.method} {request.url.raw_path.decode()}")

    def __enter__(self) -> ServiceReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._http.close()

    def get(self, path: str, params: dict[str, Any], shape: type[Answer]) -> Answer:
        """The answer to ``GET /api/v1{path}?params`` (``None`` values left out), as ``shape``.

        Raises:
            ReportError: The service is unreachable, answered other than 2xx, or answered
                something ``shape`` does not accept.
        """
        try:
            response = self._http.request("GET", path, params=params)
        except ServiceError as error:
            raise ReportError(str(error)) from error
        try:
            return shape.model_validate_json(response.content)
        except ValidationError as error:
            raise ReportError(
                f"the service's answer to GET {path} is not what this greenaudit "
                f"({__version__}) expects: {error}"
            ) from error
