"""Turning completed steps into push commands: pure rules, no I/O."""

from resolver_svc.rules.errors import ResolutionError, ResolutionProblem
from resolver_svc.rules.expressions import (
    expand,
    normalize_branch_tag,
    with_derived_variables,
)
from resolver_svc.rules.resolve import (
    push_id,
    resolve_step,
    unresolved_push_id,
    unresolved_result,
)

__all__ = [
    "ResolutionError",
    "ResolutionProblem",
    "expand",
    "normalize_branch_tag",
    "push_id",
    "resolve_step",
    "unresolved_push_id",
    "unresolved_result",
    "with_derived_variables",
]
