"""Builders of event payloads that several test modules need."""

from collections.abc import Sequence

from regflow.events import (
    BuildContext,
    Destination,
    ImageRef,
    Provider,
    PushResult,
    PushSucceeded,
)


def pushed_result(
    source: ImageRef,
    *,
    registry: str,
    domain: str,
    repository: str,
    tags: Sequence[str],
    push_id: str = "push-1",
    build_id: str = "b1",
    platforms: Sequence[str] = (),
    layers: Sequence[str] = (),
) -> PushResult:
    """A successful push of ``source`` to ``domain/repository`` under ``tags``."""
    destination = Destination(
        registry=registry,
        provider=Provider.OTHER,
        domain=domain,
        repository=repository,
        tags=list(tags),
    )
    return PushResult(
        push_id=push_id,
        build=BuildContext(pipeline_id="p", build_id=build_id, step_name="build"),
        source=source,
        destination=destination,
        outcome=PushSucceeded(
            digest=source.digest,
            media_type="application/vnd.oci.image.manifest.v1+json",
            references=destination.references,
            platforms=list(platforms),
            layers=list(layers),
            bytes_moved=10,
            blobs_copied=1,
            blobs_skipped=0,
            duration_seconds=0.1,
        ),
    )
