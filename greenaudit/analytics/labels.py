"""Class counts for a dataset profile, from what a training script has at hand.

numpy only (no scipy), so the client can use it without the server extra.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np


def class_counts_from_labels(labels: Iterable[Any]) -> list[int]:
    """Samples per class from one label per sample, classes in sorted order.

    Example:
        >>> class_counts_from_labels([2, 0, 2, 1, 2])
        [1, 1, 3]
    """
    array = np.asarray(list(labels) if not isinstance(labels, np.ndarray) else labels)
    if array.size == 0:
        raise ValueError("labels is empty")
    if array.dtype.kind in "iub":
        _, counts = np.unique(array, return_counts=True)
        return [int(c) for c in counts]
    counted = Counter(array.tolist())
    return [counted[key] for key in sorted(counted, key=repr)]


def class_counts_from_pixel_histograms(histograms: Iterable[Iterable[int]]) -> list[int]:
    """Pixels per class over a segmentation split, from one per-image histogram each.

    Example:
        >>> class_counts_from_pixel_histograms([[10, 0, 5], [0, 20, 5]])
        [10, 20, 10]
    """
    array = np.asarray(
        [list(h) for h in histograms] if not isinstance(histograms, np.ndarray) else histograms
    )
    if array.ndim != 2 or array.size == 0:
        raise ValueError("pixel histograms must be one row of per-class pixel counts per image")
    if np.any(array < 0):
        raise ValueError("pixel counts must not be negative")
    return [int(c) for c in array.sum(axis=0)]
