"""The root of every error regflow raises, and the split that decides retries.

Library errors (aiokafka, redis, httpx) are translated into these at the boundary
where they are caught, raised ``from`` the original, so callers only ever need to
know this tree::

    RegflowError
    +-- ConfigurationError      settings that cannot work; raised at start-up
    +-- TransientError          a retry may succeed (network, broker, 5xx)
    +-- PermanentError          a retry will not help
        +-- InvalidEventError   an event that does not decode or validate
"""

from __future__ import annotations


class RegflowError(Exception):
    """Base class of every regflow error."""


class ConfigurationError(RegflowError):
    """Settings are unusable; the process should refuse to start."""


class TransientError(RegflowError):
    """A failure that may go away if the same work is retried later."""


class PermanentError(RegflowError):
    """A failure that the same input will always produce again."""


class InvalidEventError(PermanentError):
    """A message that does not decode or validate against its topic's model."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
