"""``analysis.stats.median`` and ``nanmedian``: numpy's numbers bit for bit, without ``numpy.ma``."""

from __future__ import annotations

import numpy as np
import pytest

from bptt_cli.analysis.stats import median, nanmedian


def _same(a: object, b: object) -> bool:
    x, y = np.asarray(a), np.asarray(b)
    return x.shape == y.shape and x.dtype == y.dtype and x.tobytes() == y.tobytes()


@pytest.mark.parametrize("seed", range(4))
def test_median_is_numpys_bit_for_bit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for case in range(2000):
        n = int(rng.integers(1, 40))
        a = rng.standard_normal(n)
        kind = case % 5
        if kind == 1:
            a = np.round(a * 3) * np.where(rng.random(n) < 0.5, -1.0, 1.0)  # ties and signed zeros
        elif kind == 2:
            a[rng.random(n) < 0.2] = np.nan
        elif kind == 3:
            a[rng.random(n) < 0.3] = np.inf * np.sign(rng.standard_normal())
        elif kind == 4:
            a = a * 1e300
        assert _same(median(a), np.median(a)), a
        if not np.all(np.isnan(a)):
            assert _same(nanmedian(a), np.nanmedian(a)), a
        A = rng.standard_normal((int(rng.integers(1, 6)), n))
        if kind == 2:
            A[rng.random(A.shape) < 0.2] = np.nan
        for axis in (0, 1, None):
            assert _same(median(A, axis=axis), np.median(A, axis=axis)), (A, axis)
    assert _same(median(np.array([1, 2, 3, 4])), np.median(np.array([1, 2, 3, 4])))  # integers
    assert median(np.float64(2.5)) == 2.5
