"""The public client API: ``track``, ``run``, ``current_run`` and the :class:`Run` they give."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import itertools
import logging
import math
import operator
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pydantic import ValidationError

from greenaudit.schemas import RunKind
from greenaudit.settings import Settings
from greenaudit.units import G_PER_KG, SECONDS_PER_HOUR

from . import environment
from .measure import (
    CarbonIntensity,
    EnergyMeter,
    EnergySample,
    resolve_carbon_intensity,
    warm_up_in_background,
)
from .policy import BudgetExceeded, PlateauPassed, Policy
from .sender import READY_WAIT_S, RunSender
from .spool import RunSpool
from .threads import OnceWorker

if TYPE_CHECKING:  # typing.Unpack is Python 3.11+; annotations are not evaluated at run time
    from typing_extensions import Unpack

logger = logging.getLogger("greenaudit")

F = TypeVar("F", bound=Callable[..., Any])
#: What ``with`` passes to ``__exit__``: the exception's type, the exception, its traceback.
ExcInfo = tuple[type[BaseException] | None, BaseException | None, TracebackType | None]
SETTABLE = frozenset(
    {
        "model_params",
        "flops",
        "dataset_size",
        "samples_processed",
        "total_steps",
        "dataset",
        "dataset_version",
    }
)
TEXT_FACTS = frozenset({"dataset", "dataset_version"})
JOB_NAMESPACE = uuid.UUID("9a3e7c41-2f6d-4b8a-8c1e-5d0f7b3a2e64")
_job_runs = itertools.count()
_job_runs_lock = threading.Lock()
MAX_COUNTER = 2**63 - 1
_current: contextvars.ContextVar[Run | None] = contextvars.ContextVar(
    "greenaudit_run", default=None
)
_warned: set[str] = set()


def _job_run_id() -> str | None:
    """A run id every rank of a distributed job derives alike, so they report into one run."""
    if environment.placement().world_size <= 1:
        return None
    job = os.environ.get("TORCHELASTIC_RUN_ID")
    if not job and os.environ.get("SLURM_JOB_ID"):
        job = f"slurm-{os.environ['SLURM_JOB_ID']}.{os.environ.get('SLURM_STEP_ID', '0')}"
    if not job:
        return None
    # Every rank starts its runs in the same order: the n-th run of each rank is one run.
    with _job_runs_lock:
        number = next(_job_runs)
    return str(uuid.uuid5(JOB_NAMESPACE, f"{job}.{number}"))


def _counter(value: Any, name: str) -> int | None:
    """A step, epoch or count as a plain int in [0, 2^63), or a clear error."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a whole number, not {value!r}")
    try:
        number = operator.index(value)  # ints and numpy integers; never silently rounds
    except TypeError:
        raise TypeError(f"{name} must be a whole number, not {value!r}") from None
    if not 0 <= number <= MAX_COUNTER:
        raise ValueError(f"{name} must be between 0 and 2^63 - 1, not {number}")
    return int(number)


def _json_safe(value: Any) -> Any:
    """Metadata the service can store: JSON types only, NaN and infinities as text."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    try:
        number = float(value)
        return number if math.isfinite(number) else str(number)
    except (TypeError, ValueError):
        return str(value)


def _warn_once(key: str, message: str, *args: Any) -> None:
    if key not in _warned:
        _warned.add(key)
        logger.warning(message, *args)


@dataclass(frozen=True)
class RunResult:
    """What a finished run cost, as measured by this process.

    Attributes:
        run_id: The run's UUID on the service.
        status: ``finished``, ``failed`` or ``stopped_by_budget``.
        duration_s: Wall-clock seconds from start to finish.
        energy_kwh: ``cpu_kwh + gpu_kwh + ram_kwh``, in kilowatt-hours.
        co2_kg: ``energy_kwh × carbon_intensity_g_per_kwh / 1000 × pue``, kg CO2e.
        gpu_hours: Device-hours of the GPUs measured.
        energy_samples: How many energy samples were measured.
        lost_items: Items dropped because the spool reached ``GREENAUDIT_SPOOL_MAX_MB``.
        measured_s: Seconds covered by energy samples. Less than ``duration_s`` when the
            run ended before hardware detection (seconds, once per process) was done.
        methods: How each component was measured, e.g. ``{"cpu": "codecarbon"}``.
        delivered: Whether everything reached the service.
        spool_path: Where the data waits on disk when it was not delivered.

    """

    run_id: str
    status: str
    duration_s: float
    energy_kwh: float
    cpu_kwh: float
    gpu_kwh: float
    ram_kwh: float
    co2_kg: float
    gpu_hours: float
    energy_samples: int
    lost_items: int
    measured_s: float
    carbon_intensity_g_per_kwh: float
    carbon_intensity_source: str
    pue: float
    methods: dict[str, str] = field(default_factory=dict)
    delivered: bool = False
    spool_path: str | None = None


class Run:
    """One measured run. Use it as a context manager, or call :meth:`start` and :meth:`finish`.

    Example:
        >>> import greenaudit
        >>> with greenaudit.run(model="mlp-64", dataset="digits") as run:  # doctest: +SKIP
        ...     for epoch in range(3):
        ...         run.log(epoch=epoch, accuracy=0.9 + epoch / 100)
        >>> run.result.energy_kwh  # doctest: +SKIP
        1.2e-05

    """

    def __init__(
        self,
        project: str | None = None,
        model: str | None = None,
        dataset: str | None = None,
        task: str | None = None,
        *,
        name: str | None = None,
        kind: str = "train",
        group: str | None = None,
        parent_run_id: str | uuid.UUID | None = None,
        primary_metric: str | None = None,
        dataset_version: str | None = None,
        run_id: str | uuid.UUID | None = None,
        settings: Settings | None = None,
        on_budget: str | None = None,
        on_plateau: Callable[[PlateauPassed], Any] | None = None,
        **meta: Any,
    ) -> None:
        self.id = str(run_id or _job_run_id() or uuid.uuid4())
        self._policy: Policy | None = None
        if on_budget is not None or on_plateau is not None:
            try:
                self._policy = Policy(on_budget, on_plateau)
            except ValueError as error:
                # Loud, because the user asked for enforcement and will not get it.
                logger.error("greenaudit: budget policy ignored: %s", error)
        self._fields: dict[str, Any] = {
            "project": project,
            "model": model,
            "dataset": dataset,
            "task": task,
            "name": name,
            "kind": kind,
            "group": group,
            "parent_run_id": str(parent_run_id) if parent_run_id else None,
            "primary_metric": primary_metric,
            "dataset_version": dataset_version,
        }
        self._meta = _json_safe(meta)
        self._settings = settings
        self._lock = threading.Lock()
        self._totals = {
            "cpu_kwh": 0.0,
            "gpu_kwh": 0.0,
            "ram_kwh": 0.0,
            "gpu_s": 0.0,
            "measured_s": 0.0,
            "samples": 0.0,
        }
        self._methods: dict[str, str] = {}
        self._log_calls = 0
        self._last_step: int | None = None
        self._started = self._finished = False
        self._active = False
        self._token: contextvars.Token[Run | None] | None = None
        self.result: RunResult | None = None

    # Life cycle -------------------------------------------------------------------------

    def start(self) -> Run:
        """Start measuring. Returns the run itself. Never raises."""
        if self._started:
            return self
        self._started = True
        self._t0 = time.monotonic()
        self._started_at = datetime.now(timezone.utc)
        try:
            settings = self._settings or Settings()
            kind = RunKind(self._fields["kind"]).value
        except (ValidationError, ValueError) as error:
            _warn_once("settings", "greenaudit: run not measured, invalid configuration: %s", error)
            return self
        self._fields["kind"] = kind
        self._settings = settings
        self._placement = environment.placement()
        self._spool = RunSpool(
            settings.spool_path,
            self.id,
            max_bytes=int(settings.spool_max_mb * 1024 * 1024),
            rank=self._placement.rank,
        )
        self._ready = threading.Event()
        self._carbon = CarbonIntensity(0.0, "unknown", settings.country)
        self._meter = EnergyMeter(
            settings,
            rank=self._placement.rank,
            local_rank=self._placement.local_rank,
            world_size=self._placement.world_size,
            on_sample=self._on_sample,
            current_step=lambda: self._last_step,
        )
        self._sender = RunSender(
            settings,
            self._spool,
            self._create_body,
            self._ready,
            on_forecast=self._policy.consider if self._policy is not None else None,
        )
        # Carbon intensity and hardware detection are slow on first use; they run beside
        # the training, which has already started.
        if not OnceWorker(self._prepare, name="greenaudit-prepare").start():
            self._ready.set()  # measured as a run whose hardware is unknown
        self._sender.start()
        self._active = True
        return self

    def _prepare(self) -> None:
        try:
            self._carbon = resolve_carbon_intensity(self._settings)  # type: ignore[arg-type]
        except Exception as error:
            _warn_once("carbon", "greenaudit: carbon intensity unavailable (%s)", error)
        try:
            self._meter.start()
            self._meter.ready.wait(READY_WAIT_S)
        finally:
            self._ready.set()

    def finish(self, error: BaseException | None = None) -> RunResult | None:
        """Stop measuring, send what is left and return the :class:`RunResult`. Never raises."""
        if self._finished or not self._started:
            return self.result
        self._finished = True
        if not self._active:
            return None
        try:
            return self._finish(error)
        except Exception:
            logger.exception("greenaudit: could not finish run %s cleanly", self.id)
            return None

    def _finish(self, error: BaseException | None) -> RunResult:
        settings = cast(Settings, self._settings)
        duration_s = time.monotonic() - self._t0
        ended_at = datetime.now(timezone.utc)
        # One deadline for all of it, so ending a run never blocks much past flush_timeout_s.
        deadline = time.monotonic() + settings.flush_timeout_s
        self._ready.wait(settings.flush_timeout_s)
        self._meter.stop(max(0.0, deadline - time.monotonic()))
        if self.stopped_by_budget and (error is None or isinstance(error, BudgetExceeded)):
            status = "stopped_by_budget"
        else:
            status = "failed" if error is not None else "finished"
        # One run across all ranks: global rank 0 ends it; the others only end their part.
        self._sender.submit(
            "finish_run" if self._placement.rank == 0 else "end_rank",
            {
                "status": status,
                "ended_at": ended_at.isoformat(),
                "duration_s": duration_s,
                "error": f"{type(error).__name__}: {error}"[:4000] if error is not None else None,
            },
        )
        delivered = self._sender.close(max(0.0, deadline - time.monotonic()))
        self.result = self._make_result(status, duration_s, delivered)
        if not delivered:
            self._explain_spool()
        return self.result

    def _explain_spool(self) -> None:
        settings = cast(Settings, self._settings)
        if not settings.url or not settings.api_key:
            missing = "GREENAUDIT_URL" if not settings.url else "GREENAUDIT_API_KEY"
            _warn_once(
                "no-service",
                "greenaudit: no service configured (%s is unset); "
                "run %s was measured and kept in %s. Send it later with "
                "`GREENAUDIT_URL=... GREENAUDIT_API_KEY=... greenaudit flush`.",
                missing,
                self.id,
                self._spool.path,
            )
        else:
            logger.warning(
                "greenaudit: run %s could not be delivered to %s (%s); it is kept "
                "in %s. Send it later with `greenaudit flush`.",
                self.id,
                settings.url,
                self._sender.last_error,
                self._spool.path,
            )

    def _make_result(self, status: str, duration_s: float, delivered: bool) -> RunResult:
        with self._lock:
            totals = dict(self._totals)
            methods = dict(self._methods)
        energy = totals["cpu_kwh"] + totals["gpu_kwh"] + totals["ram_kwh"]
        settings = cast(Settings, self._settings)
        return RunResult(
            run_id=self.id,
            status=status,
            duration_s=duration_s,
            energy_kwh=energy,
            cpu_kwh=totals["cpu_kwh"],
            gpu_kwh=totals["gpu_kwh"],
            ram_kwh=totals["ram_kwh"],
            co2_kg=energy * self._carbon.g_per_kwh / G_PER_KG * settings.pue,
            gpu_hours=totals["gpu_s"] / SECONDS_PER_HOUR,
            energy_samples=int(totals["samples"]),
            lost_items=self._sender.lost,
            measured_s=totals["measured_s"],
            carbon_intensity_g_per_kwh=self._carbon.g_per_kwh,
            carbon_intensity_source=self._carbon.source,
            pue=settings.pue,
            methods=methods,
            delivered=delivered,
            spool_path=None if delivered else str(self._spool.path),
        )

    def __enter__(self) -> Run:
        self.start()
        self._token = _current.set(self)
        return self

    def __exit__(self, *exc_info: Unpack[ExcInfo]) -> None:
        if self._token is not None:
            _current.reset(self._token)
            self._token = None
        self.finish(exc_info[1])

    # What the training code reports ---------------------------------------------------------

    def log(self, step: int | None = None, epoch: int | None = None, **metrics: Any) -> None:
        """Record metric values at a step, e.g. ``run.log(epoch=3, accuracy=0.95)``.

        ``step`` defaults to ``epoch`` when only that is given, else to the number of earlier
        ``log`` calls: the steps done so far, in the unit of ``total_steps``. Values are checked
        and sent off the training thread.

        Each call is a step boundary: a run started with ``on_plateau`` calls it here, and one
        started with ``on_budget="stop"`` raises :class:`BudgetExceeded` here once its budget
        is spent, after keeping what this call logged. Nothing else is ever raised.
        """
        if not self._active or self._finished:
            return
        if self._placement.rank != 0:
            # One run, one set of curves: rank 0 logs the metrics, every rank its energy. Every
            # rank stops at its boundary, though, or the others would wait for it forever.
            if self._policy is not None and self._policy.pending:
                self._policy.at_step_boundary()
            return
        try:
            epoch = _counter(epoch, "epoch")
            step = _counter(step, "step") if step is not None else epoch
        except (TypeError, ValueError, OverflowError) as error:
            _warn_once(f"log:{error}", "greenaudit: run.log ignored: %s", error)
            return
        # Plain floats now: numpy scalars and tensors would not serialise, and a tensor changed
        # in place after this call must not change what was logged.
        values = {}
        for name, value in metrics.items():
            try:
                values[name] = float(value)
            except (TypeError, ValueError, OverflowError):
                _warn_once(
                    f"type:{name}",
                    "greenaudit: metric %r has a value that is not a "
                    "number (%r); such values are not recorded",
                    name,
                    value,
                )
        if step is None:
            step = self._log_calls
        self._log_calls += 1
        self._last_step = step
        # One queue item per call, whatever the number of metrics; the sender unpacks it.
        self._sender.submit("log", (step, epoch, time.time(), values))
        if self._policy is not None and self._policy.pending:
            # After the submit: what this step logged is kept when the run stops here.
            self._policy.at_step_boundary()

    @property
    def stopped_by_budget(self) -> bool:
        """Whether this run raised :class:`BudgetExceeded` (``on_budget="stop"``)."""
        return self._policy is not None and self._policy.stopped

    def set(self, **facts: Any) -> None:
        """Record facts about the run, for cost per sample and scaling curves.

        Known facts: ``model_params``, ``flops`` (training FLOPs), ``dataset_size`` (samples),
        ``samples_processed``, ``total_steps``, ``dataset``, ``dataset_version``. Unknown ones
        are ignored with one warning.
        """
        if not self._active or self._finished:
            return
        unknown = set(facts) - SETTABLE
        if unknown:
            _warn_once(
                f"set:{sorted(unknown)}",
                "greenaudit: run.set ignores unknown fields %s; known: %s",
                sorted(unknown),
                sorted(SETTABLE),
            )
        try:
            known = {
                name: (
                    float(value)
                    if name == "flops"
                    else str(value)
                    if name in TEXT_FACTS
                    else _counter(value, name)
                )
                for name, value in facts.items()
                if name in SETTABLE and value is not None
            }
        except (TypeError, ValueError, OverflowError) as error:
            _warn_once(f"set:{error}", "greenaudit: run.set ignored: %s", error)
            return
        if known:
            self._sender.submit("update_run", known)

    def dataset_profile(
        self,
        labels: Iterable[Any] | None = None,
        class_counts: Iterable[int] | None = None,
        num_classes: int | None = None,
        *,
        pixel_histograms: Iterable[Iterable[int]] | None = None,
        name: str | None = None,
        version: str | None = None,
    ) -> None:
        """Record the label distribution of the evaluation split, for NoFADE.

        Give one of ``labels`` (one label per sample), ``class_counts`` (samples or detection
        instances per class), ``pixel_histograms`` (segmentation: one per-class pixel-count
        histogram per image) or ``num_classes`` (a uniform distribution). ``name`` defaults to
        the run's dataset. Stored once per dataset and version on the service.
        """
        if not self._active or self._finished:
            return
        dataset = name or self._fields["dataset"]
        given = [x is not None for x in (labels, class_counts, num_classes, pixel_histograms)]
        if dataset is None or sum(given) != 1:
            _warn_once(
                "profile",
                "greenaudit: dataset_profile needs a dataset name and exactly one of labels, "
                "class_counts, pixel_histograms or num_classes; ignored",
            )
            return
        body: dict[str, Any] = {
            "name": dataset,
            "version": version or self._fields["dataset_version"] or "default",
        }
        # numpy is imported here, not with greenaudit: most runs never call this.
        from greenaudit.analytics.labels import (
            class_counts_from_labels,
            class_counts_from_pixel_histograms,
        )

        try:
            if labels is not None:
                body["class_counts"] = class_counts_from_labels(labels)
            elif pixel_histograms is not None:
                body["class_counts"] = class_counts_from_pixel_histograms(pixel_histograms)
            elif class_counts is not None:
                body["class_counts"] = [int(c) for c in class_counts]
            else:
                body["num_classes"] = int(cast(int, num_classes))
        except (TypeError, ValueError) as error:
            _warn_once("profile-values", "greenaudit: dataset_profile ignored: %s", error)
            return
        self._sender.submit("dataset_profile", body)

    # Called from the meter thread -------------------------------------------------------

    def _on_sample(self, sample: EnergySample) -> None:
        try:
            body = sample.to_wire().model_dump(mode="json", exclude_none=True)
        except ValidationError as error:
            # The service would refuse it; counted here, the result would not match the run.
            _warn_once("sample", "greenaudit: an energy sample was not valid, dropped: %s", error)
            return
        with self._lock:
            for component, part in sample.components():
                self._totals[f"{component}_kwh"] += part.energy_kwh
                self._methods[component] = part.method.value
            seconds = sample.duration_s
            self._totals["gpu_s"] += seconds * sample.gpu_count
            self._totals["measured_s"] += seconds
            self._totals["samples"] += 1
        self._sender.submit("energy", body)

    def _create_body(self) -> dict[str, Any]:
        placement = self._placement
        fields = {k: v for k, v in self._fields.items() if v is not None}
        return {
            "id": self.id,
            **fields,
            "hardware": {
                "node": placement.node,
                "rank": placement.rank,
                "local_rank": placement.local_rank,
                "world_size": placement.world_size,
                "cpu_model": environment.cpu_model(),
                "cpu_count": os.cpu_count(),
                "gpu_model": self._meter.gpu_model,
                "gpu_count": self._meter.gpu_count,
                "ram_total_gb": environment.ram_total_gb(),
            },
            "country_iso": self._carbon.country_iso,
            "carbon_intensity_g_per_kwh": self._carbon.g_per_kwh,
            "carbon_intensity_source": self._carbon.source,
            "pue": cast(Settings, self._settings).pue,
            "started_at": self._started_at.isoformat(),
            "meta": self._meta,
        }


def run(
    project: str | None = None,
    model: str | None = None,
    dataset: str | None = None,
    task: str | None = None,
    **options: Any,
) -> Run:
    """A new :class:`Run`; use it as ``with greenaudit.run(...) as run:``.

    Keyword options: ``name``, ``kind`` (train, finetune, eval, inference, search-trial),
    ``group``, ``parent_run_id``, ``primary_metric``, ``dataset_version``, ``run_id``,
    ``settings``; any other keyword is stored as run metadata.

    Enforcement is opt-in. ``on_budget="warn"`` logs a warning when a budget the run counts
    against is spent or forecast to be overspent; ``on_budget="stop"`` also raises
    :class:`BudgetExceeded` at the next ``run.log`` once one is spent, and the run ends as
    ``stopped_by_budget``. ``on_plateau=callback`` calls ``callback(PlateauPassed)`` once, at a
    ``run.log``, when the run is past the step where its metric is forecast to plateau; it is
    the caller's code, so what it raises reaches the training loop (a pending budget stop is
    still raised, with that exception as its context). Both need the service and
    ``run.set(total_steps=...)`` for forecasts.
    """
    return Run(project, model, dataset, task, **options)


def current_run() -> Run | None:
    """The run active in this context (inside a tracked function or block), else ``None``."""
    return _current.get()


class _Tracking:
    """What ``track(...)`` returns: a decorator and a context manager at once."""

    def __init__(self, args: tuple[Any, ...], options: dict[str, Any]) -> None:
        self._args = args
        self._options = options
        self._runs: list[Run] = []

    def __call__(self, fn: F) -> F:
        try:
            warm_up_in_background(self._options.get("settings"))
        except Exception:  # invalid settings: the run reports them when it starts
            pass
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                tracked = run(*self._args, **self._options)
                token = _current.set(tracked.start())
                error: BaseException | None = None
                try:
                    return await fn(*args, **kwargs)
                except BaseException as caught:
                    error = caught
                    raise
                finally:
                    _current.reset(token)
                    async_wrapper.last_run = tracked  # type: ignore[attr-defined]
                    # Finishing waits for delivery; keep it off the event loop.
                    await asyncio.to_thread(tracked.finish, error)

            async_wrapper.last_run = None  # type: ignore[attr-defined]
            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with run(*self._args, **self._options) as tracked:
                # The latest call's Run; its .result is filled when the call returns.
                wrapper.last_run = tracked  # type: ignore[attr-defined]
                return fn(*args, **kwargs)

        wrapper.last_run = None  # type: ignore[attr-defined]
        return cast(F, wrapper)

    def __enter__(self) -> Run:
        tracked = run(*self._args, **self._options)
        self._runs.append(tracked)
        return tracked.__enter__()

    def __exit__(self, *exc_info: Unpack[ExcInfo]) -> None:
        self._runs.pop().__exit__(*exc_info)


def track(*args: Any, **options: Any) -> Any:
    """Measure a training function (sync or async) or a block, as one run.

    Use ``@greenaudit.track``, ``@greenaudit.track(model=..., dataset=...)`` or
    ``with greenaudit.track(...) as run:``. Takes the arguments of :func:`run`. Inside, use
    :func:`current_run` to log metrics. The hook never raises into the training code.

    Example:
        >>> import greenaudit
        >>> @greenaudit.track(model="mlp-64", dataset="digits", task="classification")
        ... def train():
        ...     run = greenaudit.current_run()
        ...     for epoch in range(3):
        ...         run.log(epoch=epoch, accuracy=0.9)

    """
    if len(args) == 1 and callable(args[0]) and not options:
        return _Tracking((), {})(args[0])
    return _Tracking(args, options)
