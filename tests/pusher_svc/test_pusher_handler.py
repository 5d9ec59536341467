"""The pusher's handler over real registries, Redis and broker."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from deploy.images import SkopeoError, inspect_raw_async
from deploy.scenario import wait_for_results
from pusher_svc.handler import PushHandler
from pusher_svc.settings import PusherSettings
from regflow.events import (
    BuildContext,
    Destination,
    FailureReason,
    ImageRef,
    Provider,
    PushCommand,
    PushCommandEvent,
    PushFailed,
    PushResultEvent,
    PushSucceeded,
)
from regflow.kafka import Delivery, KafkaEventProducer
from regflow.metrics import PushMetrics
from regflow.redis import RedisKeys
from regflow.registries import Credentials, RegistryPatch, RegistryStore, SecretBox
from regflow.settings import CommonSettings

if TYPE_CHECKING:
    from deploy.stack import Registry
    from tests.conftest import RegistryFactory, SeedImage

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ACCOUNT = "acme"
DELIVERY = Delivery(topic="t", partition=0, offset=0, key=None)


@pytest.fixture
async def producer(kafka_bootstrap: str) -> AsyncIterator[KafkaEventProducer]:
    """A real producer on the session broker."""
    producer = KafkaEventProducer(
        CommonSettings(
            kafka_bootstrap_servers=kafka_bootstrap, kafka_idempotent_producer=False
        ),
        client_id="test-pusher",
    )
    await producer.start()
    yield producer
    await producer.stop()


class World:
    """A handler wired to a source registry, a destination, a store and the broker."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        source: "Registry",
        dest: "Registry",
        producer: KafkaEventProducer,
        *,
        bootstrap: str,
    ) -> None:
        self.bootstrap = bootstrap
        self.keys = RedisKeys(prefix)
        self.box = SecretBox([SecretBox.generate_key()])
        self.store = RegistryStore(redis, self.keys, self.box)
        self.source = source
        self.dest = dest
        settings = PusherSettings(
            secret_keys=SecretStr(SecretBox.generate_key()),
            insecure_registries=f"{source.host},{dest.host}",
            push_attempts=2,
            push_retry_initial_seconds=0.05,
        )
        self.handler = PushHandler(
            settings=settings,
            store=self.store,
            redis=redis,
            keys=self.keys,
            producer=producer,
        )
        self.metrics = PushMetrics(redis, self.keys)

    async def connect(self, password: str | None = None) -> None:
        """Store the destination as integration "production" of the account."""
        await self.store.create(
            ACCOUNT,
            name="production",
            provider=Provider.OTHER,
            domain=self.dest.host,
            credentials=Credentials(
                username=self.dest.username or "",
                password=SecretStr(password or self.dest.password or ""),
            ),
        )

    def command(self, digest: str, tags: list[str]) -> PushCommandEvent:
        """A push command for ``digest`` from the source to the destination."""
        return PushCommandEvent.new(
            producer="test",
            account_id=ACCOUNT,
            data=PushCommand(
                push_id=str(uuid.uuid4()),
                build=BuildContext(pipeline_id="p", build_id="b", step_name="s"),
                source=ImageRef(
                    registry=self.source.host, repository="builds/web", digest=digest
                ),
                destination=Destination(
                    registry="production",
                    provider=Provider.OTHER,
                    domain=self.dest.host,
                    repository="acme/web",
                    tags=tags,
                ),
            ),
        )

    async def results(
        self, command: PushCommandEvent, count: int = 1
    ) -> list[PushResultEvent]:
        """The ``count`` results published for ``command`` (waits up to 30 s)."""
        async with asyncio.timeout(30):
            found = await wait_for_results(
                self.bootstrap, command.correlation_id, count=count
            )
        assert all(r.data.push_id == command.data.push_id for r in found)
        return found

    async def handle_failing(
        self, command: PushCommandEvent
    ) -> tuple[PushResultEvent, PushFailed]:
        """Handle ``command`` once; its one result, which must be a failure."""
        await self.handler(command, DELIVERY)
        [result] = await self.results(command)
        outcome = result.data.outcome
        assert isinstance(outcome, PushFailed)
        return result, outcome


@pytest.fixture
async def world(
    redis_client: Redis,
    redis_prefix: str,
    registry_factory: "RegistryFactory",
    producer: KafkaEventProducer,
    kafka_bootstrap: str,
) -> World:
    """Two registries, a store, and a handler."""
    return World(
        redis_client,
        redis_prefix,
        registry_factory("none"),
        registry_factory("basic"),
        producer,
        bootstrap=kafka_bootstrap,
    )


async def test_push_publishes_success_and_counts_once_on_redelivery(
    world: World, seed_image: "SeedImage"
) -> None:
    """A redelivered command republishes the stored result; nothing counts twice."""
    digest = await seed_image(world.source, "builds/web", "b1", [4096, 8192])
    await world.connect()
    command = world.command(digest, ["v1", "latest"])

    await world.handler(command, DELIVERY)
    await world.handler(command, DELIVERY)

    first, second = await world.results(command, 2)
    assert first == second  # the same event, id included: consumers can dedupe
    outcome = first.data.outcome
    assert isinstance(outcome, PushSucceeded)
    assert outcome.digest == digest
    assert outcome.references == [
        f"{world.dest.host}/acme/web:v1",
        f"{world.dest.host}/acme/web:latest",
    ]
    assert first.causation_id == command.event_id
    counters = await world.metrics.read(ACCOUNT, "production")
    assert counters["succeeded"] == 1
    assert counters["bytes"] == outcome.bytes_moved > 4096 + 8192


async def test_rejected_credentials_give_an_auth_failure(
    world: World, seed_image: "SeedImage"
) -> None:
    """A wrong stored password ends in a failed result classified as auth."""
    digest = await seed_image(world.source, "builds/web", "b1")
    await world.connect(password="wrong")
    command = world.command(digest, ["v1"])

    result, outcome = await world.handle_failing(command)
    assert outcome.reason is FailureReason.AUTH
    assert outcome.status_code == 401
    assert "wrong" not in result.to_bytes().decode()
    assert (await world.metrics.read(ACCOUNT, "production"))["failed"] == 1


async def test_deleted_registry_gives_an_unresolved_failure(
    world: World, seed_image: "SeedImage"
) -> None:
    """A command for an integration removed since it was resolved fails clearly."""
    digest = await seed_image(world.source, "builds/web", "b1")
    command = world.command(digest, ["v1"])

    _, outcome = await world.handle_failing(command)
    assert outcome.reason is FailureReason.UNRESOLVED
    assert "production" in outcome.message


async def test_missing_source_image_gives_not_found(world: World) -> None:
    """A digest the internal registry does not hold is a not_found failure."""
    await world.connect()
    command = world.command("sha256:" + "0" * 64, ["v1"])

    _, outcome = await world.handle_failing(command)
    assert outcome.reason is FailureReason.NOT_FOUND


async def test_unreachable_registry_is_retried_then_fails_as_network(
    world: World, seed_image: "SeedImage"
) -> None:
    """A destination that stopped answering yields a network failure, not silence."""
    digest = await seed_image(world.source, "builds/web", "b1")
    await world.connect()
    world.dest.stop()
    command = world.command(digest, ["v1"])

    _, outcome = await world.handle_failing(command)
    assert outcome.reason is FailureReason.NETWORK


async def test_integration_moved_since_resolution_is_refused(
    world: World, seed_image: "SeedImage", registry_factory: "RegistryFactory"
) -> None:
    """A command for the old host never gets the credentials given for the new one."""
    digest = await seed_image(world.source, "builds/web", "b1")
    await world.connect()
    elsewhere = registry_factory("basic")
    await world.store.update(
        ACCOUNT,
        "production",
        RegistryPatch(
            domain=elsewhere.host,
            username=elsewhere.username,
            password=SecretStr(elsewhere.password or ""),
        ),
    )
    command = world.command(digest, ["v1"])  # still names the old host

    _, outcome = await world.handle_failing(command)

    assert outcome.reason is FailureReason.UNRESOLVED
    assert "moved from" in outcome.message
    creds = (world.dest.username or "", world.dest.password or "")
    with pytest.raises(SkopeoError):
        await inspect_raw_async(world.dest.host, "acme/web", "v1", creds)


async def test_invalid_source_host_still_gets_a_result(world: World) -> None:
    """A command the client cannot even address fails with invalid_name, not silence."""
    await world.connect()
    command = world.command("sha256:" + "1" * 64, ["v1"])
    bad_source = command.data.source.model_copy(update={"registry": "bad host/x"})
    command = command.model_copy(
        update={"data": command.data.model_copy(update={"source": bad_source})}
    )

    _, outcome = await world.handle_failing(command)

    assert outcome.reason is FailureReason.INVALID_NAME


@pytest.mark.unit
def test_source_credentials_go_only_to_the_internal_registry() -> None:
    """The internal registry's login is never sent to another source host."""
    key = SecretStr(SecretBox.generate_key())
    settings = PusherSettings(
        secret_keys=key,
        source_registry="internal:5000",
        source_username="ci",
        source_password=SecretStr("s3cret"),
    )
    assert settings.source_credentials_for("INTERNAL:5000") is not None
    assert settings.source_credentials_for("evil.example:5000") is None
    with pytest.raises(ValueError, match="REGFLOW_SOURCE_REGISTRY"):
        PusherSettings(
            secret_keys=key, source_username="ci", source_password=SecretStr("x")
        )
