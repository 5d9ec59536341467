"""The end-to-end demo: one real image from a build step to a connected registry.

``make demo`` (``python -m deploy.demo``) starts the local stack and the four
services as processes, builds an image into the internal registry, connects the
external registry through config-svc, emits a step-completed event, waits for
the push result and shows what cache-svc recommends next. Everything it starts
is stopped on the way out, also on Ctrl-C, SIGTERM or failure.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from deploy.images import inspect_raw
from deploy.scenario import (
    build_step_event,
    connect_registry,
    land_image,
    send_step_event,
    wait_for_recommendation,
    wait_for_results,
)
from deploy.services import Fleet
from deploy.stack import Stack, StackError
from regflow.events import PushFields, PushSucceeded
from regflow.logging import configure_logging

ACCOUNT = "acme"
REPOSITORY = "builds/web"
WORKDIR = Path(".stack") / "demo"
# Bounds on each wait, so a broken stack fails the demo instead of hanging it.
RESULT_TIMEOUT_SECONDS = 120
CACHE_TIMEOUT_SECONDS = 30


def _say(label: str, text: str) -> None:
    print(f"  {label:<10}{text}", flush=True)


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


async def _deliver(stack: Stack, fleet: Fleet) -> None:
    external = stack.external_registry
    image = await asyncio.to_thread(
        land_image, WORKDIR, stack.internal_registry.host, REPOSITORY
    )
    _say(
        "built",
        f"{image.repository} ({image.layers} layers, {_mib(image.size)}) in the "
        f"internal registry {image.registry}",
    )
    _say("", image.digest)

    test = await connect_registry(fleet["config-svc"].url, ACCOUNT, external)
    _say(
        "registry",
        f'"production" -> {external.host} (prefix acme, default) added via '
        f"config-svc; connection test: {'ok' if test.get('ok') else test}",
    )

    event = build_step_event(
        ACCOUNT,
        image,
        branch="main",
        push=PushFields(
            image_name="web",
            tags=["${{CF_BRANCH_TAG_NORMALIZED}}", "${{CF_SHORT_REVISION}}"],
        ),
    )
    started = time.monotonic()
    await send_step_event(stack.broker.bootstrap, event)
    _say(
        "event",
        f"step-completed for build {event.data.build_id} (branch main) sent to Kafka",
    )

    async with asyncio.timeout(RESULT_TIMEOUT_SECONDS):
        [result] = await wait_for_results(stack.broker.bootstrap, event.correlation_id)
    outcome = result.data.outcome
    if not isinstance(outcome, PushSucceeded):
        _say("FAILED", f"{outcome.reason}: {outcome.message}")
        raise SystemExit(1)
    for reference in outcome.references:
        _say("pushed", reference)
    _say(
        "",
        f"{outcome.digest}, {_mib(outcome.bytes_moved)} in {outcome.blobs_copied} "
        f"blobs, push {outcome.duration_seconds:.2f} s "
        f"(event to result {time.monotonic() - started:.2f} s)",
    )
    reference_tag = outcome.references[0].rsplit(":", 1)[1]
    raw = await asyncio.to_thread(
        inspect_raw,
        external.host,
        "acme/web",
        reference_tag,
        (external.username or "", external.password or ""),
    )
    verified = "sha256:" + hashlib.sha256(raw).hexdigest() == image.digest
    _say("verified", f"skopeo reads the same digest at the destination: {verified}")
    if not verified:
        raise SystemExit(1)

    async with asyncio.timeout(CACHE_TIMEOUT_SECONDS):
        advice = await wait_for_recommendation(
            fleet["cache-svc"].url,
            ACCOUNT,
            repository=REPOSITORY,
            platform="linux/amd64",
            branch="feature/login",
            reference_prefix=f"{external.host}/",
        )
    first = advice["candidates"][0]
    _say(
        "cache",
        f"next build of {REPOSITORY} on feature/login (linux/amd64) should cache "
        f"from the {first['match'].replace('_', ' ')} image:",
    )
    for reference in advice["references"]:
        _say("", reference)


def _terminate(signum: int, _: FrameType | None) -> None:
    # Turn SIGTERM into the same unwinding as Ctrl-C, so everything is stopped.
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> int:
    """Run the demo; 0 when the image arrived and was verified."""
    signal.signal(signal.SIGTERM, _terminate)
    configure_logging("demo", log_format="console", level="WARNING")
    shutil.rmtree(WORKDIR, ignore_errors=True)
    WORKDIR.mkdir(parents=True)
    print("regflow demo: a build step's image delivered to a connected registry")
    try:
        started = time.monotonic()
        # The stack deletes the demo's keys under this prefix when it stops.
        with Stack(WORKDIR, redis_prefix=f"regflow-demo-{int(time.time())}") as stack:
            _say(
                "stack",
                f"broker {stack.broker.bootstrap}, {stack.redis.url}, internal "
                f"registry {stack.internal_registry.host}, external registry "
                f"{stack.external_registry.host} (basic auth)",
            )
            with Fleet(WORKDIR, stack.env()) as fleet:
                ports = ", ".join(
                    f"{s.name} :{s.port}" for s in fleet.services.values()
                )
                _say(
                    "services",
                    f"{ports} ready in {time.monotonic() - started:.1f} s",
                )
                asyncio.run(_deliver(stack, fleet))
            _say("stopped", "services drained and stopped")
        _say("", "stack stopped, the demo's Redis keys deleted")
    except StackError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        print(f"logs: {WORKDIR / 'logs'}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130
    except TimeoutError:
        print(f"demo timed out; logs: {WORKDIR / 'logs'}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
