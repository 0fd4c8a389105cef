"""The wire contract: every request a client sends and every answer it reads, defined once.

The service (``greenaudit.api``) validates requests and serialises answers with these models;
the client side (the hook, the CLI, the report) validates the service's answers with the same
ones. They import only pydantic, so the client-only install can use them.

* :mod:`.base`: limits, checked field types, the enums of a run, :class:`Page`.
* :mod:`.requests`: what clients send (runs, energy samples, metric points, dataset profiles).
* :mod:`.runs`, :mod:`.totals`, :mod:`.analytics`, :mod:`.budgets`: the service's answers.
"""

# Each module lists its public names once, in its __all__; the package re-exports them.
from . import base, requests
from .base import *  # noqa: F403
from .requests import *  # noqa: F403

__all__ = base.__all__ + requests.__all__
