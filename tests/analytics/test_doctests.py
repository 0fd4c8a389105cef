"""The examples in the analytics docstrings run and hold."""

from __future__ import annotations

import doctest

import pytest

from greenaudit.analytics import curves, entropy, forecast, labels, nofade, returns


@pytest.mark.parametrize("module", [curves, entropy, forecast, labels, nofade, returns])
def test_docstring_examples(module: object):
    result = doctest.testmod(module, raise_on_error=False)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0
