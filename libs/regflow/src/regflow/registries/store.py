"""Registry integrations in Redis, with an outbox of the changes to publish.

Layout, under the service's key prefix::

    HASH <prefix>:registries:<account>         name -> JSON record; credentials
                                               as a Fernet token, never plain,
                                               their username beside it
    HASH <prefix>:registry-accounts:<account>  version, default, caching
    LIST <prefix>:outbox:registry-changes      RegistryChangedEvent JSON, oldest
                                               first, until a relay published it

Every change is one optimistic transaction (WATCH both account keys, read, check
the rules, MULTI, write, EXEC; retried when another writer got in between). The
same EXEC bumps the account's version and appends the change's event to the
outbox, so an event exists exactly when its change was committed, and versions
of one account grow by one per change without gaps.

Names are unique in an account regardless of case (``ext`` and ``EXT`` cannot
both exist), because people and pipelines read them as one name; the name is
kept as written, and every lookup is by that exact name, as pipelines'
``registry: <name>`` is resolved. A lookup that misses only by case says which
name was meant.

Only :meth:`RegistryStore.get` decrypts credentials (a push or a connection
test needs them). Lists, reads and every change work without the secret key
that sealed them, so credentials no configured key decrypts can still be seen,
replaced, removed or deleted with their registry.
"""

from __future__ import annotations

import builtins
import hmac
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, cast

import structlog
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    SecretStr,
    TypeAdapter,
    ValidationError,
)
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, WatchError

from regflow.events.common import Provider
from regflow.events.registries import RegistryChange, RegistryChangedEvent
from regflow.oci.client import is_docker_hub_host
from regflow.redis import RedisKeys, as_text
from regflow.registries.crypto import SecretBox
from regflow.registries.errors import (
    CredentialsUnreadable,
    RegistryAlreadyExists,
    RegistryNotFound,
    RegistryRuleViolation,
    RegistryStoreUnavailable,
    SecretDecryptionError,
)
from regflow.registries.models import (
    Credentials,
    Password,
    RegistryIntegration,
    RegistrySummary,
    credentials_from,
)
from regflow.registries.rules import (
    ACCOUNT_ID_PATTERN,
    Domain,
    RepositoryPrefix,
    Username,
    docker_hub_caching_message,
    is_docker_hub,
    resolve_domain,
)

log = structlog.get_logger(__name__)

ChangeKind = Literal["created", "updated", "deleted"]

# Optimistic transactions retried this often before the store reports contention.
DEFAULT_MAX_ATTEMPTS: Final = 25
_VERSION: Final = b"version"
_DEFAULT: Final = b"default"
_CACHING: Final = b"caching"


def outbox_key(keys: RedisKeys) -> str:
    """The LIST that holds registry-change events not yet published."""
    return keys.key("outbox", "registry-changes")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class RegistryPatch(BaseModel):
    """A partial update: only the fields that were set are applied.

    Setting ``domain`` to None gives the provider's default domain back (Docker
    Hub, GHCR, Quay); setting ``repository_prefix`` to None or ``""`` removes it;
    setting both ``username`` and ``password`` to None removes the credentials.
    Names never change: delete and create instead, because pipelines refer to
    registries by name.

    Stored credentials never follow a move: a patch that changes the domain or
    the provider of an integration with credentials must give ``password``
    again (``username`` may be kept) or remove the credentials, otherwise the
    password given for one host would be sent to another.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: Provider | None = None
    domain: Domain | None = None
    repository_prefix: RepositoryPrefix = None
    username: Username | None = None
    password: Password | None = None


@dataclass(frozen=True)
class RegistryChangeResult:
    """What one committed (or found unnecessary) change did.

    ``event`` is None, and ``version`` the unchanged current one, when the call
    changed nothing (setting the default to the current default, a patch with
    the stored values); nothing was written then.
    """

    registry: RegistrySummary | None
    """The integration the call was about, after it (a deleted one as it was).

    None only when a flag nobody had was cleared."""
    changed: tuple[RegistrySummary, ...]
    """Every integration whose state changed, as it is now (deleted: as it was)."""
    version: int
    default_registry: str | None
    caching_registry: str | None
    event: RegistryChangedEvent | None


@dataclass(frozen=True)
class AccountRegistries:
    """A consistent read of one account's integrations and flags (no secrets)."""

    account_id: str
    version: int
    default_registry: str | None
    caching_registry: str | None
    registries: tuple[RegistrySummary, ...] = field(default=())

    def get(self, name: str) -> RegistrySummary | None:
        """The integration called ``name``, if any."""
        return next((r for r in self.registries if r.name == name), None)

    @property
    def default(self) -> RegistrySummary | None:
        """The default registry (pushes that name none go there), if set."""
        return self.get(self.default_registry) if self.default_registry else None

    @property
    def caching(self) -> RegistrySummary | None:
        """The caching registry, if set."""
        return self.get(self.caching_registry) if self.caching_registry else None


class _StoredRegistry(BaseModel):
    """The JSON kept per integration; flags live in the account hash."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str
    provider: Provider
    domain: str
    repository_prefix: str | None = None
    credentials: str | None = None
    # Not secret, and shown by every read: kept in plain text so reads need no
    # key. Sealed in the token too, which wins, and must agree (see _unseal).
    # None in records written before it was kept here.
    username: str | None = None
    created_at: AwareDatetime
    updated_at: AwareDatetime


class _SealedCredentials(BaseModel):
    """What the Fernet token holds.

    The account and registry name are sealed in too, so a token copied onto
    another integration in Redis is refused instead of used.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    account_id: str
    name: str
    username: str
    password: SecretStr


@dataclass(frozen=True)
class _AccountState:
    version: int
    default: str | None
    caching: str | None
    records: Mapping[str, _StoredRegistry]


@dataclass(frozen=True)
class _Change:
    kind: ChangeKind
    subject: str
    default: str | None
    caching: str | None
    put: _StoredRegistry | None = None
    delete: bool = False
    touched: tuple[str, ...] = ()


_Plan = Callable[[_AccountState], _Change | None]


class _Kept:
    """The stored credentials stay as they are (the token is not touched)."""


_KEPT: Final = _Kept()


class RegistryStore:
    """The registry integrations of every account.

    Safe to share between tasks and processes: writes are optimistic
    transactions. Every method makes a few Redis round trips and may block on
    Redis; none talks to Kafka. Writes raise the domain errors of
    :mod:`regflow.registries.errors` *before* anything is written, and
    :class:`RegistryStoreUnavailable` when Redis fails (then nothing, or the
    whole change, was committed; the caller cannot tell which, so a retried
    create may meet :class:`RegistryAlreadyExists`).
    """

    def __init__(
        self,
        redis: Redis,
        keys: RedisKeys,
        secret_box: SecretBox,
        *,
        producer: str = "config-svc",
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._box = secret_box
        self._producer = producer
        self._max_attempts = max_attempts
        self._clock = clock
        self.outbox_key = outbox_key(keys)

    def registries_key(self, account_id: str) -> str:
        """The HASH of the account's integration records."""
        return self._keys.key("registries", account_id)

    def account_key(self, account_id: str) -> str:
        """The HASH of the account's version, default and caching registry."""
        return self._keys.key("registry-accounts", account_id)

    # Reads

    async def snapshot(self, account_id: str) -> AccountRegistries:
        """Every integration of the account and its flags, read atomically.

        Decrypts nothing: summaries show the username and whether credentials
        are stored.

        Raises:
            RegistryStoreUnavailable: Redis failed.
        """
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hgetall(self.registries_key(account_id))
                pipe.hgetall(self.account_key(account_id))
                records, account = await pipe.execute()
        except RedisError as exc:
            raise RegistryStoreUnavailable(f"Redis failed: {exc}") from exc
        state = _parse_state(records, account)
        return AccountRegistries(
            account_id=account_id,
            version=state.version,
            default_registry=state.default,
            caching_registry=state.caching,
            registries=tuple(
                self._summary(account_id, state.records[name], state)
                for name in sorted(state.records)
            ),
        )

    async def list(self, account_id: str) -> builtins.list[RegistrySummary]:
        """The account's integrations sorted by name (see :meth:`snapshot`)."""
        return list((await self.snapshot(account_id)).registries)

    async def get(self, account_id: str, name: str) -> RegistryIntegration:
        """One integration, credentials decrypted: for a push or a connection test.

        Raises:
            RegistryNotFound: no such name in the account.
            CredentialsUnreadable: no configured key decrypts the stored
                credentials, or they were sealed for another integration.
            RegistryStoreUnavailable: Redis failed.
        """
        record, state = await self._read(account_id, name)
        return self._integration(account_id, record, state)

    async def describe(self, account_id: str, name: str) -> RegistrySummary:
        """One integration without its secret; decrypts nothing.

        Raises:
            RegistryNotFound: no such name in the account.
            RegistryStoreUnavailable: Redis failed.
        """
        record, state = await self._read(account_id, name)
        return self._summary(account_id, record, state)

    async def _read(
        self, account_id: str, name: str
    ) -> tuple[_StoredRegistry, _AccountState]:
        """One record and its account's flags, read atomically."""
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hget(self.registries_key(account_id), name)
                pipe.hgetall(self.account_key(account_id))
                raw, account = await pipe.execute()
        except RedisError as exc:
            raise RegistryStoreUnavailable(f"Redis failed: {exc}") from exc
        if raw is None:
            raise RegistryNotFound(
                account_id, name, await self._similar_name(account_id, name)
            )
        return _StoredRegistry.model_validate_json(raw), _parse_state({}, account)

    # Writes

    async def create(
        self,
        account_id: str,
        *,
        name: str,
        provider: Provider,
        domain: str | None = None,
        repository_prefix: str | None = None,
        credentials: Credentials | None = None,
        correlation_id: str | None = None,
    ) -> RegistryChangeResult:
        """Add an integration; it is neither default nor caching until set so.

        ``domain`` may be omitted for providers with a fixed or usual host
        (dockerhub, ghcr, quay).

        Raises:
            RegistryRuleViolation: a field breaks a rule (``field`` names it).
            RegistryAlreadyExists: the name is taken in the account, in any case.
            RegistryStoreUnavailable: Redis failed.
        """
        if not _valid_account_id(account_id):
            raise RegistryRuleViolation(
                "account_id", f"account id must match {ACCOUNT_ID_PATTERN}"
            )
        now = self._clock()
        normalized_domain = (
            _validated(Domain, "domain", domain) if domain is not None else None
        )
        integration = _build(
            account_id=account_id,
            name=name,
            provider=provider,
            domain=resolve_domain(provider, normalized_domain),
            repository_prefix=repository_prefix,
            credentials=credentials,
            created_at=now,
            updated_at=now,
        )
        record = self._seal(integration)

        def plan(state: _AccountState) -> _Change:
            taken = _same_name(integration.name, state.records)
            if taken is not None:
                raise RegistryAlreadyExists(account_id, integration.name, taken)
            return _Change(
                "created",
                integration.name,
                state.default,
                state.caching,
                put=record,
            )

        return await self._commit(account_id, plan, correlation_id)

    async def update(
        self,
        account_id: str,
        name: str,
        patch: RegistryPatch,
        *,
        correlation_id: str | None = None,
    ) -> RegistryChangeResult:
        """Apply the fields set in ``patch`` (see :class:`RegistryPatch`).

        Stored credentials are decrypted only when the patch changes their
        username alone (the kept password is sealed again with it). A patch
        that leaves them alone keeps the stored token as it is; one that gives
        a password or removes them never needs the old one (a given password
        equal to the stored one, when that can be read, changes nothing).

        Raises:
            RegistryNotFound: no such name in the account.
            RegistryRuleViolation: the patched integration breaks a rule; on
                ``password`` when it moves stored credentials to another
                domain or provider, or changes the username alone while no
                configured key decrypts the stored password.
            RegistryStoreUnavailable: Redis failed.
        """

        def plan(state: _AccountState) -> _Change | None:
            record = state.records.get(name)
            if record is None:
                raise _not_found(account_id, name, state)
            patched, kept = _apply(
                self._summary(account_id, record, state),
                patch,
                self._clock(),
                lambda: self._stored_password(account_id, record),
            )
            put = self._seal(patched)
            if kept:
                put = put.model_copy(
                    update={
                        "credentials": record.credentials,
                        "username": record.username,
                    }
                )
            if put.model_copy(update={"updated_at": record.updated_at}) == record:
                return None
            return _Change("updated", name, state.default, state.caching, put=put)

        return await self._commit(account_id, plan, correlation_id)

    async def delete(
        self, account_id: str, name: str, *, correlation_id: str | None = None
    ) -> RegistryChangeResult:
        """Remove an integration.

        Deleting the default or the caching registry is allowed and leaves the
        account without one (the event says so); pipelines that relied on the
        default then fail with a clear "no default registry" until another is
        set. Refusing would not protect pipelines that name the registry anyway.

        Raises:
            RegistryNotFound: no such name in the account.
            RegistryStoreUnavailable: Redis failed.
        """

        def plan(state: _AccountState) -> _Change:
            if name not in state.records:
                raise _not_found(account_id, name, state)
            return _Change(
                "deleted",
                name,
                None if state.default == name else state.default,
                None if state.caching == name else state.caching,
                delete=True,
            )

        return await self._commit(account_id, plan, correlation_id)

    async def set_default(
        self,
        account_id: str,
        name: str | None,
        *,
        correlation_id: str | None = None,
    ) -> RegistryChangeResult:
        """Make ``name`` the default registry (None: no default).

        The previous default stops being the default in the same transaction.

        Raises:
            RegistryNotFound: no such name in the account.
            RegistryStoreUnavailable: Redis failed.
        """
        return await self._set_flag(account_id, "default", name, correlation_id)

    async def set_caching(
        self,
        account_id: str,
        name: str | None,
        *,
        correlation_id: str | None = None,
    ) -> RegistryChangeResult:
        """Make ``name`` the caching registry (None: no caching registry).

        Raises:
            RegistryNotFound: no such name in the account.
            RegistryRuleViolation: on ``name``, for a Docker Hub registry.
            RegistryStoreUnavailable: Redis failed.
        """
        return await self._set_flag(account_id, "caching", name, correlation_id)

    # TODO(regflow#2): nothing runs this over every account yet; key rotation
    # needs a command that does, before the old key leaves REGFLOW_SECRET_KEYS.
    async def reencrypt(self, account_id: str) -> int:
        """Re-encrypt the account's credentials with the first secret key.

        Part of key rotation; changes no integration, so no version and no event.
        Returns how many credentials were rewritten.

        Raises:
            CredentialsUnreadable: stored credentials no key decrypts.
            RegistryStoreUnavailable: Redis failed or stayed contended.
        """
        key = self.registries_key(account_id)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for _ in range(self._max_attempts):
                    try:
                        await pipe.watch(key)
                        raw = cast("dict[bytes, bytes]", await pipe.hgetall(key))
                        rotated: dict[str, str] = {}
                        for name_bytes, value in raw.items():
                            record = _StoredRegistry.model_validate_json(value)
                            if record.credentials is None:
                                continue
                            try:
                                token = self._box.rotate(record.credentials.encode())
                            except SecretDecryptionError as exc:
                                raise CredentialsUnreadable(
                                    account_id, record.name
                                ) from exc
                            rotated[name_bytes.decode()] = record.model_copy(
                                update={"credentials": token.decode()}
                            ).model_dump_json()
                        pipe.multi()  # type: ignore[no-untyped-call]
                        if rotated:
                            pipe.hset(key, mapping=rotated)  # type: ignore[arg-type]
                        await pipe.execute()
                    except WatchError:
                        continue
                    return len(rotated)
        except RedisError as exc:
            raise RegistryStoreUnavailable(f"Redis failed: {exc}") from exc
        raise RegistryStoreUnavailable(
            f"re-encryption of account {account_id!r} kept colliding with changes"
        )

    # Internals

    async def _similar_name(self, account_id: str, name: str) -> str | None:
        """The account's name equal to ``name`` but for case (a missed lookup)."""
        try:
            names = await self._redis.hkeys(self.registries_key(account_id))
        except RedisError as exc:
            raise RegistryStoreUnavailable(f"Redis failed: {exc}") from exc
        return _same_name(name, [as_text(n) for n in names])

    async def _set_flag(
        self,
        account_id: str,
        flag: Literal["default", "caching"],
        name: str | None,
        correlation_id: str | None,
    ) -> RegistryChangeResult:
        def plan(state: _AccountState) -> _Change | None:
            current = state.default if flag == "default" else state.caching
            if name == current:
                return None
            if name is not None:
                record = state.records.get(name)
                if record is None:
                    raise _not_found(account_id, name, state)
                if flag == "caching" and is_docker_hub(record.provider, record.domain):
                    raise RegistryRuleViolation(
                        "name", docker_hub_caching_message(record.domain)
                    )
            # Clearing a flag reports the registry that lost it.
            subject = name if name is not None else current
            assert subject is not None  # name == current was handled above
            touched = (current,) if name is not None and current is not None else ()
            return _Change(
                "updated",
                subject,
                name if flag == "default" else state.default,
                name if flag == "caching" else state.caching,
                touched=touched,
            )

        return await self._commit(account_id, plan, correlation_id)

    async def _commit(
        self, account_id: str, plan: _Plan, correlation_id: str | None
    ) -> RegistryChangeResult:
        """Run ``plan`` on a watched read and commit its change with its event."""
        registries_key = self.registries_key(account_id)
        account_key = self.account_key(account_id)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for attempt in range(1, self._max_attempts + 1):
                    try:
                        await pipe.watch(registries_key, account_key)
                        state = _parse_state(
                            cast(
                                "dict[bytes, bytes]", await pipe.hgetall(registries_key)
                            ),
                            cast("dict[bytes, bytes]", await pipe.hgetall(account_key)),
                        )
                        change = plan(state)
                        if change is None:
                            await pipe.reset()  # type: ignore[no-untyped-call]
                            return _unchanged(state)
                        result = self._result(account_id, state, change, correlation_id)
                        assert result.event is not None
                        pipe.multi()  # type: ignore[no-untyped-call]
                        self._queue_writes(pipe, account_id, change, result)
                        await pipe.execute()
                    except WatchError:
                        log.debug(
                            "registry change collided, retrying",
                            account_id=account_id,
                            attempt=attempt,
                        )
                        continue
                    return result
        except RedisError as exc:
            raise RegistryStoreUnavailable(f"Redis failed: {exc}") from exc
        raise RegistryStoreUnavailable(
            f"changes to account {account_id!r} kept colliding; retry later"
        )

    def _queue_writes(
        self,
        pipe: Pipeline,
        account_id: str,
        change: _Change,
        result: RegistryChangeResult,
    ) -> None:
        """Queue the record, flags, version and outbox writes inside MULTI."""
        registries_key = self.registries_key(account_id)
        account_key = self.account_key(account_id)
        if change.put is not None:
            pipe.hset(registries_key, change.subject, change.put.model_dump_json())
        if change.delete:
            pipe.hdel(registries_key, change.subject)
        pipe.hset(account_key, _VERSION, result.version)
        for flag, value in ((_DEFAULT, change.default), (_CACHING, change.caching)):
            if value is None:
                pipe.hdel(account_key, flag)
            else:
                pipe.hset(account_key, flag, value)
        assert result.event is not None
        pipe.rpush(self.outbox_key, result.event.to_bytes())

    def _result(
        self,
        account_id: str,
        state: _AccountState,
        change: _Change,
        correlation_id: str | None,
    ) -> RegistryChangeResult:
        """The result and event of ``change`` applied to ``state``."""
        version = state.version + 1
        after = _AccountState(
            version=version,
            default=change.default,
            caching=change.caching,
            records=dict(state.records),
        )
        if change.put is not None:
            after.records[change.subject] = change.put  # type: ignore[index]
        # A deleted registry is reported as it was, flags included.
        subject_state = state if change.delete else after
        subject = self._summary(
            account_id, subject_state.records[change.subject], subject_state
        )
        others = tuple(
            self._summary(account_id, after.records[name], after)
            for name in change.touched
        )
        event = RegistryChangedEvent.new(
            producer=self._producer,
            account_id=account_id,
            correlation_id=correlation_id,
            data=RegistryChange(
                change=change.kind,
                version=version,
                registry=subject.view(),
                default_registry=change.default,
                caching_registry=change.caching,
            ),
        )
        return RegistryChangeResult(
            registry=subject,
            changed=(subject, *others),
            version=version,
            default_registry=change.default,
            caching_registry=change.caching,
            event=event,
        )

    def _seal(self, integration: RegistryIntegration) -> _StoredRegistry:
        """The record to store: credentials encrypted, flags left out."""
        token: str | None = None
        username: str | None = None
        if integration.credentials is not None:
            username = integration.credentials.username
            sealed = _SealedCredentials(
                account_id=integration.account_id,
                name=integration.name,
                username=username,
                password=integration.credentials.password,
            )
            token = self._box.encrypt(_reveal(sealed)).decode()
        return _StoredRegistry(
            name=integration.name,
            provider=integration.provider,
            domain=integration.domain,
            repository_prefix=integration.repository_prefix,
            credentials=token,
            username=username,
            created_at=integration.created_at,
            updated_at=integration.updated_at,
        )

    def _unseal(self, account_id: str, record: _StoredRegistry) -> _SealedCredentials:
        """The decrypted credentials of ``record``, which must have some.

        Raises:
            CredentialsUnreadable: no key decrypts them, they were sealed for
                another integration, or the username beside them was changed.
        """
        assert record.credentials is not None
        try:
            sealed = _SealedCredentials.model_validate_json(
                self._box.decrypt(record.credentials.encode())
            )
        except (SecretDecryptionError, ValidationError) as exc:
            raise CredentialsUnreadable(account_id, record.name) from exc
        if (sealed.account_id, sealed.name) != (account_id, record.name) or (
            record.username is not None and record.username != sealed.username
        ):
            raise CredentialsUnreadable(account_id, record.name)
        return sealed

    def _stored_password(
        self, account_id: str, record: _StoredRegistry
    ) -> SecretStr | None:
        """The stored password, or None when there is none or it is unreadable."""
        if record.credentials is None:
            return None
        try:
            return self._unseal(account_id, record).password
        except CredentialsUnreadable:
            # Handled by the caller (the patch must give the password again);
            # the operator still needs to know the keys do not fit.
            log.warning(
                "stored credentials unreadable", account_id=account_id, name=record.name
            )
            return None

    def _integration(
        self, account_id: str, record: _StoredRegistry, state: _AccountState
    ) -> RegistryIntegration:
        """The integration of a stored record, credentials decrypted."""
        credentials = None
        if record.credentials is not None:
            sealed = self._unseal(account_id, record)
            credentials = Credentials(
                username=sealed.username, password=sealed.password
            )
        # Stored records were validated when written; not re-checking them here
        # keeps data written under older, looser rules readable.
        return RegistryIntegration.model_construct(
            **self._fields(account_id, record, state), credentials=credentials
        )

    def _summary(
        self, account_id: str, record: _StoredRegistry, state: _AccountState
    ) -> RegistrySummary:
        """The integration of a stored record without its secret; no decryption."""
        return RegistrySummary.model_construct(
            **self._fields(account_id, record, state),
            username=record.username,
            has_credentials=record.credentials is not None,
        )

    @staticmethod
    def _fields(
        account_id: str, record: _StoredRegistry, state: _AccountState
    ) -> dict[str, Any]:
        """What every form of the integration shows, from its record and flags."""
        return {
            "account_id": account_id,
            "name": record.name,
            "provider": record.provider,
            "domain": record.domain,
            "repository_prefix": record.repository_prefix,
            "is_default": state.default == record.name,
            "is_caching": state.caching == record.name,
            "created_at": record.created_at,
            "updated_at": record.updated_at,
        }


def _parse_state(
    records: Mapping[bytes, bytes], account: Mapping[bytes, bytes]
) -> _AccountState:
    """Decode the two account hashes."""
    default = account.get(_DEFAULT)
    caching = account.get(_CACHING)
    return _AccountState(
        version=int(account.get(_VERSION, b"0")),
        default=default.decode() if default is not None else None,
        caching=caching.decode() if caching is not None else None,
        records={
            name.decode(): _StoredRegistry.model_validate_json(value)
            for name, value in records.items()
        },
    )


def _unchanged(state: _AccountState) -> RegistryChangeResult:
    """The result of a call that found nothing to change."""
    return RegistryChangeResult(
        registry=None,
        changed=(),
        version=state.version,
        default_registry=state.default,
        caching_registry=state.caching,
        event=None,
    )


def _reveal(sealed: _SealedCredentials) -> bytes:
    """The plaintext to encrypt: the model's JSON with the secret shown."""
    data = sealed.model_dump(mode="json")
    data["password"] = sealed.password.get_secret_value()
    return json.dumps(data, separators=(",", ":")).encode()


def _same_name(name: str, names: Iterable[str]) -> str | None:
    """The one of ``names`` equal to ``name`` regardless of case, if any."""
    folded = name.casefold()
    return next((n for n in names if n.casefold() == folded), None)


def _not_found(account_id: str, name: str, state: _AccountState) -> RegistryNotFound:
    """The error for a missed lookup, naming a registry that differs in case."""
    return RegistryNotFound(account_id, name, _same_name(name, state.records))


def _valid_account_id(account_id: str) -> bool:
    return re.match(ACCOUNT_ID_PATTERN, account_id) is not None


def _rule_violation(exc: ValidationError) -> RegistryRuleViolation:
    """The first error of ``exc`` as a violation naming the API field.

    Only the message is kept: pydantic's ``input`` may be a secret.
    """
    error = exc.errors(include_url=False, include_input=False)[0]
    loc = [str(part) for part in error["loc"]]
    # Credentials are one nested model here but two flat fields in the API.
    if loc and loc[0] == "credentials" and len(loc) > 1:
        loc = loc[1:]
    message = error["msg"].removeprefix("Value error, ")
    return RegistryRuleViolation(loc[0] if loc else "body", message)


def _validated(annotation: Any, field_name: str, value: object) -> Any:
    """``value`` validated as ``annotation``; errors name ``field_name``."""
    try:
        return TypeAdapter(annotation).validate_python(value)
    except ValidationError as exc:
        violation = _rule_violation(exc)
        raise RegistryRuleViolation(field_name, violation.message) from None


def _build(**fields: Any) -> RegistryIntegration:
    """A validated integration; errors become violations naming the field."""
    try:
        return RegistryIntegration(**fields)
    except ValidationError as exc:
        raise _rule_violation(exc) from None


def _apply(
    current: RegistrySummary,
    patch: RegistryPatch,
    now: datetime,
    stored_password: Callable[[], SecretStr | None],
) -> tuple[RegistryIntegration, bool]:
    """``current`` with the fields set in ``patch``, validated.

    Returns the patched integration and whether the stored credentials stay as
    they are (then the integration holds none: they were not decrypted).
    ``stored_password`` decrypts the stored password, None when no key can; it
    is called only when the patch gives a password or changes the username.
    """
    given = patch.model_fields_set
    provider = patch.provider if "provider" in given else current.provider
    if provider is None:
        raise RegistryRuleViolation("provider", "provider cannot be removed")
    if "domain" in given:
        domain = patch.domain
    elif provider is Provider.DOCKERHUB:
        # Switching to Docker Hub brings its one domain with it.
        domain = None
    else:
        domain = current.domain
    credentials = _patched_credentials(current, patch, stored_password)
    patched = _build(
        account_id=current.account_id,
        name=current.name,
        provider=provider,
        domain=resolve_domain(provider, domain),
        repository_prefix=(
            patch.repository_prefix
            if "repository_prefix" in given
            else current.repository_prefix
        ),
        credentials=credentials if credentials is not _KEPT else None,
        is_default=current.is_default,
        is_caching=current.is_caching,
        created_at=current.created_at,
        updated_at=now,
    )
    # Checked on the otherwise valid result, so other mistakes are reported first.
    if current.has_credentials and "password" not in given:
        _refuse_moving_credentials(current, patched.provider, patched.domain)
    return patched, credentials is _KEPT


def _patched_credentials(
    current: RegistrySummary,
    patch: RegistryPatch,
    stored_password: Callable[[], SecretStr | None],
) -> Credentials | _Kept | None:
    """What the credentials become: new ones, :data:`_KEPT`, or None (none).

    Raises:
        RegistryRuleViolation: half credentials; on ``password`` when the
            username changes alone and the stored password is unreadable.
    """
    given = patch.model_fields_set
    if not current.has_credentials:
        return credentials_from(
            patch.username if "username" in given else None,
            patch.password if "password" in given else None,
        )
    username = patch.username if "username" in given else current.username
    if "password" in given:
        new = credentials_from(username, patch.password)
        if new is not None and new.username == current.username:
            stored = stored_password()
            # The stored password given again changes nothing: keep its token.
            if stored is not None and hmac.compare_digest(
                stored.get_secret_value().encode(),
                new.password.get_secret_value().encode(),
            ):
                return _KEPT
        return new
    if username == current.username:
        return _KEPT
    if username is None:
        raise RegistryRuleViolation("username", "a password needs a username")
    password = stored_password()
    if password is None:
        raise RegistryRuleViolation(
            "password",
            "the stored password cannot be decrypted with the configured "
            "REGFLOW_SECRET_KEYS: give the password again to change the username",
        )
    return credentials_from(username, password)


def _refuse_moving_credentials(
    current: RegistrySummary, provider: Provider, domain: str
) -> None:
    """Refuse keeping stored credentials across a domain or provider change.

    The stored password was given for ``current``'s host and provider; kept
    through a move, the next test-connection or push would send it to the new
    host, which may belong to someone else. Docker Hub's host names count as one
    host.

    Raises:
        RegistryRuleViolation: on ``password``, saying how to proceed.
    """
    again = (
        "needs the password again (or username and password both null to remove "
        "the credentials)"
    )
    same_host = current.domain == domain or (
        is_docker_hub_host(current.domain) and is_docker_hub_host(domain)
    )
    if not same_host:
        raise RegistryRuleViolation(
            "password",
            f"the stored password was given for {current.domain} and is never sent "
            f"to another host: changing the domain to {domain} {again}",
        )
    if provider is not current.provider:
        raise RegistryRuleViolation(
            "password",
            f"the stored password was given for provider {current.provider.value!r} "
            f"on {current.domain}: changing the provider to {provider.value!r} "
            f"{again}",
        )
