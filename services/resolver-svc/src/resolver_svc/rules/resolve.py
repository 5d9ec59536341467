"""The core rule: a completed step plus the account's registries -> push commands.

Rule decisions, in the order they apply:

1. A step that did not succeed produces nothing (no command, no failure): there
   is no trustworthy image to push. This holds for push steps too.
2. A build step with ``disable_push`` produces nothing, even if it names a
   registry. Push steps ignore ``disable_push``: a push step always pushes.
3. Destination registry: ``registry`` (after expansion) if given, else the
   account default. Unknown name, empty name, no default, or a default that no
   longer exists -> ResolutionError.
4. Repository: ``image_name`` (after expansion) if given, else the source image's
   repository; then the prefix and naming rules of :mod:`.references`.
5. Tags: ``tags`` or ``tag`` (after expansion). Defaults: push steps ``latest``;
   build steps ``${{CF_BRANCH_TAG_NORMALIZED}}`` when the build has a branch,
   else ``latest``.
6. Tag policy: build steps lower-case their tags (the platform's default
   ``lowercase`` policy); push steps keep tags as written. The step payload has
   no ``tag_policy`` field, so ``original`` cannot be asked for yet.
7. One command per destination registry, carrying every tag. ``push_id`` is a
   UUID5 of (step event id, registry, repository): a redelivered step yields the
   same ids, so the pusher can recognise repeats.
"""

from __future__ import annotations

import uuid
from typing import Final

from regflow.events import (
    BuildContext,
    Destination,
    FailureReason,
    PushCommand,
    PushFailed,
    PushResult,
    RegistryView,
    StepCompleted,
)
from resolver_svc.registries.model import AccountRegistries
from resolver_svc.rules.errors import ResolutionError, ResolutionProblem
from resolver_svc.rules.expressions import (
    BRANCH_TAG_NORMALIZED,
    expand,
    with_derived_variables,
)
from resolver_svc.rules.references import (
    check_tags,
    compose_repository,
    registry_domain,
)

# Fixed namespace for push ids; changing it changes every id, so never do.
PUSH_ID_NAMESPACE: Final = uuid.UUID("6f1d2c3e-5a4b-4c8d-9e0f-7a6b5c4d3e2f")
DEFAULT_TAG: Final = "latest"


def push_id(step_event_id: uuid.UUID, registry: str, repository: str) -> str:
    """The id of the push of one step to one repository; stable across redelivery."""
    return str(
        uuid.uuid5(PUSH_ID_NAMESPACE, f"{step_event_id}|{registry}|{repository}")
    )


def unresolved_push_id(step_event_id: uuid.UUID) -> str:
    """The id of the failed result of a step that could not be resolved."""
    return str(uuid.uuid5(PUSH_ID_NAMESPACE, f"{step_event_id}|unresolved"))


def build_context(step: StepCompleted) -> BuildContext:
    """The build a step belongs to, as carried on commands and results."""
    return BuildContext(
        pipeline_id=step.pipeline_id,
        build_id=step.build_id,
        step_name=step.step_name,
        branch=step.branch,
        revision=step.revision,
    )


def resolve_step(
    step: StepCompleted,
    registries: AccountRegistries,
    *,
    step_event_id: uuid.UUID,
) -> list[PushCommand]:
    """The push commands ``step`` asks for; empty when it asks for none.

    Pure: no I/O. Raises ResolutionError when the step asks for a push that
    cannot be resolved (see the module docstring for every rule).
    """
    if step.status != "succeeded":
        return []
    if step.step_type == "build" and step.push.disable_push:
        return []

    variables = with_derived_variables(step.variables)
    registry = _destination_registry(step, registries, variables)
    image_name = (
        expand(
            step.push.image_name, variables, field="image_name", registry=registry.name
        )
        if step.push.image_name is not None
        else step.image.repository
    )
    repository = compose_repository(registry, image_name)
    tags = _tags(step, variables, registry=registry.name)
    destination = Destination(
        registry=registry.name,
        provider=registry.provider,
        domain=registry_domain(registry),
        repository=repository,
        tags=tags,
    )
    return [
        PushCommand(
            push_id=push_id(step_event_id, registry.name, repository),
            build=build_context(step),
            source=step.image,
            destination=destination,
        )
    ]


def unresolved_result(
    step: StepCompleted, error: ResolutionError, *, step_event_id: uuid.UUID
) -> PushResult:
    """The failed push result that reports ``error`` for ``step``."""
    return PushResult(
        push_id=unresolved_push_id(step_event_id),
        build=build_context(step),
        source=step.image,
        destination=None,
        registry=error.registry,
        outcome=PushFailed(reason=FailureReason.UNRESOLVED, message=error.message),
    )


def _destination_registry(
    step: StepCompleted, registries: AccountRegistries, variables: dict[str, str]
) -> RegistryView:
    raw = step.push.registry
    if raw is not None:
        # Until it expands, the raw text is the best name to report.
        name = expand(raw, variables, field="registry", registry=raw).strip()
        if not name:
            raise ResolutionError(
                ResolutionProblem.UNKNOWN_REGISTRY,
                f"registry {raw!r} expands to an empty name",
                registry=raw,
            )
        registry = registries.get(name)
        if registry is None:
            raise ResolutionError(
                ResolutionProblem.UNKNOWN_REGISTRY,
                f"no registry integration named {name!r} in this account",
                registry=name,
            )
        return registry

    default = registries.default_registry
    if default is None:
        raise ResolutionError(
            ResolutionProblem.NO_DEFAULT_REGISTRY,
            "the step names no registry and the account has no default registry; "
            "name one in the step, set a default"
            + (", or set disable_push" if step.step_type == "build" else ""),
        )
    registry = registries.get(default)
    if registry is None:
        raise ResolutionError(
            ResolutionProblem.UNKNOWN_REGISTRY,
            f"the account's default registry {default!r} does not exist",
            registry=default,
        )
    return registry


def _tags(
    step: StepCompleted, variables: dict[str, str], *, registry: str
) -> list[str]:
    if step.push.tags is not None:
        written = list(step.push.tags)
    elif step.push.tag is not None:
        written = [step.push.tag]
    elif step.step_type == "build" and BRANCH_TAG_NORMALIZED in variables:
        written = ["${{" + BRANCH_TAG_NORMALIZED + "}}"]
    else:
        written = [DEFAULT_TAG]
    tags = [expand(t, variables, field="tag", registry=registry) for t in written]
    if step.step_type == "build":
        tags = [t.lower() for t in tags]
    return check_tags(tags, registry=registry)
