"""Settings shared by the client hook, the CLI and the service.

Every setting is read from the environment with the ``GREENAUDIT_`` prefix, for example
``GREENAUDIT_DATABASE_URL`` or ``GREENAUDIT_COUNTRY``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """greenaudit configuration, read from ``GREENAUDIT_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="GREENAUDIT_", extra="ignore")

    url: str | None = Field(
        default=None,
        description="Base URL of the greenaudit service the client reports to. "
        "Unset: runs are measured and kept in the local spool.",
    )
    api_key: str | None = Field(default=None, description="Project write key for the client.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the service database. Unset: SQLite under HOME.",
    )
    admin_token: str | None = Field(
        default=None, description="Token required to create projects. No default."
    )
    home: Path = Field(
        default=Path("~/.greenaudit"), description="Folder for the SQLite database and spool."
    )
    spool_dir: Path | None = Field(default=None, description="Spool folder. Default HOME/spool.")
    country: str | None = Field(
        default=None,
        description="ISO-3166 alpha-3 country of the machine, for its grid carbon intensity.",
    )
    carbon_intensity: float | None = Field(
        default=None, gt=0, description="Carbon intensity override in gCO2e/kWh."
    )
    pue: float = Field(default=1.0, ge=1.0, le=3.0, description="Power usage effectiveness.")
    measure_interval_s: float = Field(
        default=10.0, gt=0, description="Seconds between energy samples."
    )
    flush_timeout_s: float = Field(
        default=10.0, ge=0, description="Longest wait at the end of a run to deliver its data."
    )
    spool_max_mb: float = Field(
        default=512.0, gt=0, description="Largest spool per run; beyond it items are counted lost."
    )
    heartbeat_interval_s: float = Field(
        default=30.0, gt=0, description="Client: seconds between heartbeats to the service."
    )
    heartbeat_timeout_s: float = Field(
        default=600.0,
        gt=0,
        description="Service: a running run not heard from for this long is marked crashed.",
    )
    budget_check_interval_s: float = Field(
        default=15.0,
        gt=0,
        description="Client: seconds between checks of the run's budgets and plateau, for "
        "runs started with on_budget or on_plateau.",
    )
    alert_interval_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="Service: seconds between checks of budgets and plateaus for new alerts, "
        "and between webhook delivery rounds.",
    )
    webhook_allow_private: bool = Field(
        default=False,
        description="Service: allow webhooks to hosts on private or local networks.",
    )
    sqlite_busy_timeout_ms: int = Field(default=15000, ge=0)
    rate_limit: str = Field(
        default="1000/second",
        description="Service: requests allowed per project key, in the limits library's notation "
        "('1000/second', '20000/minute', '100/second;5000/hour'); 'off' disables it.",
    )
    auth_failure_limit: str = Field(
        default="20/minute",
        description="Service: failed authentications (bad key, bad admin token, bad sign-in) "
        "allowed per client address, in the same notation; past it the address gets 429 until "
        "its oldest failure leaves the window. 'off' disables it.",
    )
    rate_limit_storage: str = Field(
        default="memory://",
        description="Service: where rate-limit counters live. memory:// counts per worker "
        "process; redis://host:6379 shares them between workers and machines.",
    )
    max_body_mb: float = Field(
        default=8.0,
        gt=0,
        le=1024,
        description="Service: largest request body accepted, in MB; larger ones get 413.",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Service: browser origins allowed to call the API from other sites "
        "(CORS). Empty: CORS is off.",
    )

    @field_validator("country")
    @classmethod
    def _country_is_alpha3(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if len(value) != 3 or not value.isalpha():
            raise ValueError("GREENAUDIT_COUNTRY must be an ISO-3166 alpha-3 code such as FRA")
        return value.upper()

    @property
    def home_dir(self) -> Path:
        """The expanded ``HOME`` folder."""
        return self.home.expanduser()

    @property
    def spool_path(self) -> Path:
        """The spool folder, ``HOME/spool`` unless ``SPOOL_DIR`` is set."""
        return (self.spool_dir or self.home_dir / "spool").expanduser()

    @property
    def resolved_database_url(self) -> str:
        """The database URL, with PostgreSQL URLs pinned to the psycopg 3 driver."""
        if not self.database_url:
            return f"sqlite:///{self.home_dir / 'greenaudit.db'}"
        url = self.database_url
        for bare in ("postgresql://", "postgres://"):
            if url.startswith(bare):
                return "postgresql+psycopg://" + url[len(bare) :]
        return url


@lru_cache
def get_settings() -> Settings:
    """Return the process-wide settings, read once from the environment."""
    return Settings()
