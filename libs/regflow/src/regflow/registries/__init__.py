"""Registry integrations: the model, its rules, encrypted storage in Redis.

config-svc writes through :class:`RegistryStore`; the other services read from
it (pusher-svc for credentials, resolver-svc for the default registry).
"""

from regflow.registries.crypto import SecretBox
from regflow.registries.errors import (
    CredentialsUnreadable,
    RegistryAlreadyExists,
    RegistryNotFound,
    RegistryRuleViolation,
    RegistryStoreError,
    RegistryStoreUnavailable,
    SecretDecryptionError,
    SecretKeyError,
)
from regflow.registries.models import (
    Credentials,
    RegistryIntegration,
    RegistrySummary,
    credentials_from,
)
from regflow.registries.settings import SecretKeysSettings
from regflow.registries.store import (
    AccountRegistries,
    RegistryChangeResult,
    RegistryPatch,
    RegistryStore,
    outbox_key,
)

__all__ = [
    "AccountRegistries",
    "Credentials",
    "CredentialsUnreadable",
    "RegistryAlreadyExists",
    "RegistryChangeResult",
    "RegistryIntegration",
    "RegistryNotFound",
    "RegistryPatch",
    "RegistryRuleViolation",
    "RegistryStore",
    "RegistryStoreError",
    "RegistryStoreUnavailable",
    "RegistrySummary",
    "SecretBox",
    "SecretDecryptionError",
    "SecretKeyError",
    "SecretKeysSettings",
    "credentials_from",
    "outbox_key",
]
