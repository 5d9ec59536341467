"""Why a step could not be turned into push commands."""

from __future__ import annotations

from enum import StrEnum

from regflow.errors import PermanentError


class ResolutionProblem(StrEnum):
    """The classes of resolution failure, for tests, logs and dashboards."""

    UNKNOWN_REGISTRY = "unknown_registry"  # the named registry is not connected
    NO_DEFAULT_REGISTRY = "no_default_registry"  # nothing named and no default
    UNDEFINED_VARIABLE = "undefined_variable"  # ${{VAR}} with no such variable
    MALFORMED_EXPRESSION = "malformed_expression"  # "${{" without its "}}"
    INVALID_NAME = "invalid_name"  # the repository is not a valid name
    INVALID_TAG = "invalid_tag"  # a tag is not a valid tag
    REGISTRY_MISCONFIGURED = "registry_misconfigured"  # e.g. no domain


class ResolutionError(PermanentError):
    """A step whose push cannot be resolved: the same input always fails.

    Carries the problem class, a message an operator can act on, and the
    registry name when the step (or the account default) named one.
    """

    def __init__(
        self, problem: ResolutionProblem, message: str, *, registry: str | None = None
    ) -> None:
        super().__init__(message)
        self.problem = problem
        self.message = message
        self.registry = registry
