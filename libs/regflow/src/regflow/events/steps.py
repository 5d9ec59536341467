"""Payload of the platform's step-completed topic (regflow's input)."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from regflow.events.common import FrozenModel, ImageRef
from regflow.events.envelope import Envelope


class PushFields(FrozenModel):
    """The push-related fields of a build or push step, as the pipeline wrote them.

    Values may hold ``${{VAR}}`` expressions; the resolver expands them from the
    build's variables, so they are not validated as names or tags here.
    """

    registry: str | None = None
    image_name: str | None = None
    tag: str | None = None
    tags: list[str] | None = None
    disable_push: bool = False

    @model_validator(mode="after")
    def _tag_or_tags(self) -> Self:
        if self.tag is not None and self.tags is not None:
            msg = "give either tag or tags, not both"
            raise ValueError(msg)
        if self.tags is not None and not self.tags:
            msg = "tags must not be empty"
            raise ValueError(msg)
        return self


class StepCompleted(FrozenModel):
    """A build or push step ended in a pipeline."""

    pipeline_id: str = Field(min_length=1)
    build_id: str = Field(min_length=1)
    step_name: str = Field(min_length=1)
    step_type: Literal["build", "push"]
    status: Literal["succeeded", "failed"]
    image: ImageRef = Field(
        description="The image the step produced (build) or refers to (push)"
    )
    platforms: list[str] = Field(
        default_factory=list, description="os/arch[/variant] the image was built for"
    )
    push: PushFields = Field(default_factory=PushFields)
    variables: dict[str, str] = Field(
        default_factory=dict, description="The build's variables: CF_BRANCH, ..."
    )

    @property
    def branch(self) -> str | None:
        """The git branch the build ran for, if the platform said."""
        return self.variables.get("CF_BRANCH")

    @property
    def revision(self) -> str | None:
        """The git commit the build ran for, if the platform said."""
        return self.variables.get("CF_REVISION")


class StepCompletedEvent(Envelope[StepCompleted]):
    """The platform finished a build or push step."""

    event_type: Literal["step.completed"] = "step.completed"
    schema_version: Literal[1] = 1
