"""Shared fixtures: a pinned, colour-free environment for every CLI test; hypothesis profiles."""

from __future__ import annotations

import os

# As `bptt` itself does (cli.main): one BLAS thread unless the user says otherwise. Set before
# numpy is first imported, so that tests calling the Python API run like the command.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# The default profile keeps CI fast and repeatable (the same examples on every run, so a clean
# checkout cannot go red on a newly drawn case); HYPOTHESIS_PROFILE=stress for a long random
# search by hand, whose finds become @example lines.
settings.register_profile(
    "default",
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "stress", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True)
def _plain_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """No forced colour or CI-specific terminal behaviour leaks into the tests."""
    for var in ("FORCE_COLOR", "GITHUB_ACTIONS", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "CLICOLOR_FORCE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("TERM", "dumb")
