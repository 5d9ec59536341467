"""When and how long to retry a registry operation: one small policy on tenacity."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from regflow.oci.errors import RegistryError, RegistryUnavailableError

log = structlog.get_logger(__name__)

T = TypeVar("T")


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, RegistryError) and exc.is_transient


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries of transient registry failures, with backoff and jitter.

    Only operations that are safe to repeat are run through it: GET and HEAD,
    starting an upload session, PUT of a manifest, and the restart of a whole
    blob copy (a fresh source read and a fresh upload session). A registry's
    ``Retry-After`` (429/503) replaces the computed backoff, capped at
    ``retry_after_max`` seconds.

    Attributes:
        attempts: total tries, the first included (1 disables retries).
        backoff_initial: first backoff in seconds; doubles per attempt.
        backoff_max: cap of one backoff in seconds.
        jitter: up to this many random seconds added to each backoff.
        retry_after_max: cap on a registry-requested wait.
        sleep: how to wait (injectable so tests need not sleep).
    """

    attempts: int = 4
    backoff_initial: float = 0.5
    backoff_max: float = 20.0
    jitter: float = 0.5
    retry_after_max: float = 60.0
    sleep: Callable[[float], Awaitable[None]] = field(
        default=asyncio.sleep, compare=False
    )

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")

    @classmethod
    def no_retries(cls) -> RetryPolicy:
        """A policy that tries once."""
        return cls(attempts=1)

    def wait_seconds(self, retry_state: RetryCallState) -> float:
        """The pause before the next attempt."""
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, RegistryUnavailableError) and exc.retry_after is not None:
            return min(exc.retry_after, self.retry_after_max)
        backoff = wait_exponential_jitter(
            multiplier=self.backoff_initial, max=self.backoff_max, jitter=self.jitter
        )
        return float(backoff(retry_state))

    async def run(self, operation: Callable[[], Awaitable[T]], *, what: str) -> T:
        """Run ``operation`` until it succeeds, fails permanently, or attempts run out.

        The last error is re-raised unchanged; ``what`` names the operation in logs.
        """
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=self.wait_seconds,
            retry=retry_if_exception(_is_transient),
            sleep=self.sleep,
            reraise=True,
            before_sleep=lambda state: _log_retry(state, what),
        )

        async def attempt() -> T:
            # tenacity awaits only coroutine functions; a lambda returning a
            # coroutine would be "called" without ever running.
            return await operation()

        return await retrying(attempt)


def _log_retry(state: RetryCallState, what: str) -> None:
    outcome = state.outcome
    exc = outcome.exception() if outcome is not None else None
    log.warning(
        "registry operation retried",
        operation=what,
        attempt=state.attempt_number,
        wait_seconds=round(state.upcoming_sleep, 2),
        error=str(exc),
    )
