import pytest

from journeys.services import runtime


@pytest.fixture
def tick():
    """Advance every due enrollment, as the workers would, until nothing is due now."""

    def run(now=None) -> int:
        total = 0
        while True:
            result = runtime.advance_due(now=now)
            total += result.step_runs
            if not result.claimed:
                return total

    return run
