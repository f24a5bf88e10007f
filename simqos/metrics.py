"""Pure functions over outcomes: proportions and their confidence intervals.

No state, no I/O: every function takes counts or arrays and returns numbers.
"""

from __future__ import annotations

import math

from scipy.stats import norm

__all__ = ["wilson_interval"]


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / n``.

    Unlike the normal approximation it stays inside [0, 1] and is informative at 0 and n
    successes, which is what a miss rate of zero needs. Returns ``(low, high)``.

    Raises ValueError if ``n < 1``, ``successes`` is outside ``[0, n]`` or ``confidence`` is
    outside (0, 1).
    """
    if n < 1:
        raise ValueError(f"n(={n}) must be >= 1")
    if not 0 <= successes <= n:
        raise ValueError(f"successes(={successes}) must be in [0, n(={n})]")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence(={confidence}) must be in (0, 1)")
    z = float(norm.ppf(0.5 + confidence / 2.0))
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # Clamp the rounding error at the ends so that 0 and n give exactly 0 and 1.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high
