"""Totals over the wire: the answers are the wire models of greenaudit.schemas.totals."""

from __future__ import annotations

from greenaudit.schemas.totals import TotalsBy, TotalsOut, TotalsRow

__all__ = ["TotalsBy", "TotalsOut", "TotalsRow"]
