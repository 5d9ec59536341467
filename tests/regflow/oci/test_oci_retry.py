import pytest

from regflow.oci.errors import (
    RegistryAuthError,
    RegistryUnavailableError,
    RegistryUnreachableError,
)
from regflow.oci.retry import RetryPolicy

pytestmark = pytest.mark.unit


class Sleeps:
    """Records the waits instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        """Record one wait."""
        self.waits.append(seconds)


class Flaky:
    """Fails with the given errors in turn, then returns "done"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        """Fail with the next error, or succeed when none is left."""
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


async def test_transient_errors_are_retried_with_growing_backoff() -> None:
    """Unreachable and 5xx errors are retried; each backoff is bounded."""
    sleeps = Sleeps()
    policy = RetryPolicy(
        attempts=4, backoff_initial=1.0, backoff_max=3.0, jitter=0.0, sleep=sleeps
    )
    operation = Flaky(
        RegistryUnreachableError("down"),
        RegistryUnavailableError("503", status_code=503),
        RegistryUnreachableError("down"),
    )
    assert await policy.run(operation, what="op") == "done"
    assert operation.calls == 4
    assert sleeps.waits == [1.0, 2.0, 3.0]


async def test_permanent_errors_are_not_retried() -> None:
    """An auth error is raised at once."""
    sleeps = Sleeps()
    operation = Flaky(RegistryAuthError("denied", status_code=401))
    with pytest.raises(RegistryAuthError):
        await RetryPolicy(sleep=sleeps).run(operation, what="op")
    assert operation.calls == 1
    assert sleeps.waits == []


async def test_attempts_are_bounded_and_the_last_error_is_raised() -> None:
    """After the last attempt the registry error itself comes out, not a wrapper."""
    operation = Flaky(*(RegistryUnreachableError(f"down {i}") for i in range(5)))
    with pytest.raises(RegistryUnreachableError, match="down 2"):
        await RetryPolicy(attempts=3, sleep=Sleeps()).run(operation, what="op")
    assert operation.calls == 3


async def test_retry_after_replaces_the_backoff_and_is_capped() -> None:
    """A registry's Retry-After is honoured, up to retry_after_max."""
    sleeps = Sleeps()
    policy = RetryPolicy(attempts=3, retry_after_max=10.0, sleep=sleeps)
    operation = Flaky(
        RegistryUnavailableError("429", status_code=429, retry_after=4.0),
        RegistryUnavailableError("429", status_code=429, retry_after=600.0),
    )
    await policy.run(operation, what="op")
    assert sleeps.waits == [4.0, 10.0]


async def test_a_lambda_returning_a_coroutine_is_awaited() -> None:
    """Operations may be lambdas over coroutine functions; they must really run."""
    operation = Flaky(RegistryUnreachableError("down"))
    result = await RetryPolicy(sleep=Sleeps()).run(lambda: operation(), what="op")  # noqa: PLW0108 - the lambda is the point
    assert result == "done"
    assert operation.calls == 2


def test_no_retries_policy_tries_once() -> None:
    """no_retries() is a single attempt; zero attempts are refused."""
    assert RetryPolicy.no_retries().attempts == 1
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
