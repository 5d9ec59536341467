"""Errors of the registry-integration store, under the regflow root.

::

    RegflowError
    +-- RegistryStoreError
    |   +-- RegistryNotFound          no such name in the account       (Permanent)
    |   +-- RegistryAlreadyExists     the name is taken (any case)      (Permanent)
    |   +-- RegistryRuleViolation     a rule is broken; names the field (Permanent)
    |   +-- CredentialsUnreadable     no configured key decrypts them   (Permanent)
    |   +-- RegistryStoreUnavailable  Redis failed or stayed contended  (Transient)
    +-- SecretDecryptionError         no secret key decrypts a token    (Permanent)
    +-- SecretKeyError                REGFLOW_SECRET_KEYS is unusable   (Configuration)

"(Permanent)" means the class is also a ``regflow.errors.PermanentError``, and so
on, so Kafka handlers that let them escape get the right retry behaviour.
"""

from __future__ import annotations

from regflow.errors import (
    ConfigurationError,
    PermanentError,
    RegflowError,
    TransientError,
)


class RegistryStoreError(RegflowError):
    """Base class of the registry store's errors."""


# The names below read as facts (like httpx's ``ConnectTimeout``) and are part of
# the store's contract, hence no ``Error`` suffix (N818).


class RegistryNotFound(RegistryStoreError, PermanentError):  # noqa: N818
    """The account has no registry integration of that name.

    Lookups are by exact name; ``similar`` is the account's registry whose name
    differs only in case, if any, so the message can point at it.
    """

    def __init__(self, account_id: str, name: str, similar: str | None = None) -> None:
        hint = (
            f" (names are matched exactly: did you mean {similar!r}?)"
            if similar is not None
            else ""
        )
        super().__init__(f"account {account_id!r} has no registry named {name!r}{hint}")
        self.account_id = account_id
        self.name = name
        self.similar = similar


class RegistryAlreadyExists(RegistryStoreError, PermanentError):  # noqa: N818
    """Another registry integration of the account already has that name.

    Names are unique regardless of case; ``existing`` is the taken name as it
    was written (``name`` is the one asked for).
    """

    def __init__(self, account_id: str, name: str, existing: str | None = None) -> None:
        existing = existing if existing is not None else name
        detail = (
            f"; names are unique regardless of case, so {name!r} is taken too"
            if existing != name
            else ""
        )
        super().__init__(
            f"account {account_id!r} already has a registry named {existing!r}{detail}"
        )
        self.account_id = account_id
        self.name = name
        self.existing = existing


class RegistryRuleViolation(RegistryStoreError, PermanentError):  # noqa: N818
    """A value breaks a registry-integration rule.

    ``field`` is the name of the offending field as the HTTP API spells it
    (``name``, ``provider``, ``domain``, ``repository_prefix``, ``username``,
    ``password``), so the API can point at it.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class CredentialsUnreadable(RegistryStoreError, PermanentError):  # noqa: N818
    """Stored credentials that none of the configured secret keys decrypts.

    Happens when the key that encrypted them was removed from
    ``REGFLOW_SECRET_KEYS`` before they were re-encrypted, or when the stored value
    was tampered with. Raised only where the password itself is needed
    (``RegistryStore.get`` and ``reencrypt``); lists, reads and changes of the
    integration work without it.
    """

    def __init__(self, account_id: str, name: str) -> None:
        super().__init__(
            f"the credentials of registry {name!r} in account {account_id!r} cannot be "
            "decrypted with the configured REGFLOW_SECRET_KEYS"
        )
        self.account_id = account_id
        self.name = name


class RegistryStoreUnavailable(RegistryStoreError, TransientError):  # noqa: N818
    """Redis failed, or a change kept colliding with concurrent ones; retry later."""


class SecretKeyError(ConfigurationError):
    """``REGFLOW_SECRET_KEYS`` is missing or holds something that is not a key."""


class SecretDecryptionError(PermanentError):
    """A token that none of the keys decrypts (rotated out, or tampered with)."""
