"""Label entropy of a dataset, H(D) in ANALYTICS.md section 3."""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy.stats import entropy


def label_entropy_bits(class_counts: Sequence[int]) -> float:
    """Shannon entropy of a label distribution given as counts per class, in bits.

    Classes with a count of zero contribute nothing.

    Example:
        >>> round(label_entropy_bits([5, 5, 5, 5]), 12)
        2.0

    """
    if not class_counts or sum(class_counts) <= 0:
        raise ValueError("class_counts must hold at least one positive count")
    if any(count < 0 for count in class_counts):
        raise ValueError("class_counts must not be negative")
    return float(entropy(class_counts, base=2))


def uniform_entropy_bits(num_classes: int) -> float:
    """Entropy of a uniform distribution over ``num_classes`` classes: log2 K bits."""
    if num_classes < 1:
        raise ValueError("num_classes must be at least 1")
    return math.log2(num_classes)
