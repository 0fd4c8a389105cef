"""The budget and plateau policy: it acts only when asked, once, and at a step boundary."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from greenaudit import BudgetExceeded, PlateauPassed
from greenaudit.client.policy import Policy


def answer(exceeded: bool = False, forecast: bool = False, passed: bool = False) -> dict[str, Any]:
    budget = {
        "id": "b1",
        "group": "sweep",
        "period": "all",
        "limit_kg_co2": 0.5,
        "limit_kwh": None,
        "spent": {"kwh": 9.0, "kg_co2": 0.6 if exceeded else 0.3},
        "forecast": {"kwh": 12.0, "kg_co2": 0.8},
        "exceeded": exceeded,
        "forecast_exceeded": forecast or exceeded,
    }
    plateau = {
        "metric": "accuracy",
        "step": 40,
        "value": 0.91,
        "final_value": 0.912,
        "passed": passed,
        "steps_after": 60,
        "energy_after_kwh": 3.0,
        "co2_after_kg": 0.15,
    }
    return {"budgets": [budget], "plateau": plateau}


def test_nothing_is_raised_unless_stop_was_asked_for(caplog: pytest.LogCaptureFixture):
    for choice in (None, "warn"):
        policy = Policy(choice, None)
        policy.consider(answer(exceeded=True))
        assert not policy.pending
        policy.at_step_boundary()  # no exception
        assert not policy.stopped


def test_warn_says_once_per_budget_what_is_spent_and_forecast(caplog: pytest.LogCaptureFixture):
    policy = Policy("warn", None)
    with caplog.at_level(logging.WARNING, logger="greenaudit"):
        policy.consider(answer(forecast=True))
        policy.consider(answer(forecast=True))
        policy.consider(answer(exceeded=True))
        policy.consider(answer(exceeded=True))
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "greenaudit: a budget this run counts against is forecast to be overspent: "
        "group 'sweep' (all): 0.8 of 0.5 kg CO2e",
        "greenaudit: a budget this run counts against is spent: "
        "group 'sweep' (all): 0.6 of 0.5 kg CO2e",
    ]


def test_stop_raises_once_at_the_next_boundary_with_the_budgets():
    policy = Policy("stop", None)
    policy.consider(answer(forecast=True))  # only forecast: no stop
    assert not policy.pending
    policy.consider(answer(exceeded=True))
    assert policy.pending and not policy.stopped
    with pytest.raises(BudgetExceeded) as raised:
        policy.at_step_boundary()
    assert policy.stopped
    assert raised.value.budgets[0]["id"] == "b1"
    assert "group 'sweep' (all): 0.6 of 0.5 kg CO2e" in str(raised.value)
    # Caught and training goes on (the user's choice): it is not raised again.
    policy.consider(answer(exceeded=True))
    policy.at_step_boundary()


def test_the_plateau_callback_is_called_once_with_what_the_service_said():
    calls: list[PlateauPassed] = []
    policy = Policy(None, calls.append)
    policy.consider(answer(passed=False))
    policy.at_step_boundary()
    assert calls == []
    policy.consider(answer(passed=True))
    policy.at_step_boundary()
    policy.consider(answer(passed=True))
    policy.at_step_boundary()
    assert calls == [
        PlateauPassed(
            metric="accuracy",
            step=40,
            value=0.91,
            final_value=0.912,
            steps_after=60,
            energy_after_kwh=3.0,
            co2_after_kg=0.15,
        )
    ]


@pytest.mark.parametrize(
    ("on_budget", "on_plateau"), [("Stop", None), ("halt", None), (None, "not callable")]
)
def test_a_policy_that_cannot_be_followed_is_refused(on_budget: Any, on_plateau: Any):
    with pytest.raises(ValueError):
        Policy(on_budget, on_plateau)


def test_a_plateau_callback_that_raises_does_not_cancel_the_budget_stop():
    def failing(_: PlateauPassed) -> None:
        raise OSError("checkpoint disk full")

    policy = Policy("stop", failing)
    both = answer(exceeded=True, passed=True)
    policy.consider(both)
    with pytest.raises(BudgetExceeded) as raised:
        policy.at_step_boundary()
    assert isinstance(raised.value.__context__, OSError)
    assert policy.stopped and not policy.pending


def test_an_odd_plateau_answer_is_ignored_and_the_stop_still_comes():
    calls: list[PlateauPassed] = []
    policy = Policy("stop", calls.append)
    odd = answer(exceeded=True, passed=True)
    odd["plateau"]["energy_after_kwh"] = None  # what a service with no rate might send
    policy.consider(odd)
    assert policy.pending
    with pytest.raises(BudgetExceeded):
        policy.at_step_boundary()
    assert calls == []
