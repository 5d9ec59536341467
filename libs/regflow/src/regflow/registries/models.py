"""A registry integration: where an account pushes, and with which credentials."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

from regflow import oci
from regflow.events.common import Provider
from regflow.events.registries import RegistryView
from regflow.registries.errors import RegistryRuleViolation
from regflow.registries.rules import (
    MAX_PASSWORD,
    Domain,
    RegistryName,
    RepositoryPrefix,
    Username,
    check_password,
    check_provider_rules,
)

Password = Annotated[
    SecretStr,
    AfterValidator(check_password),
    Field(
        description="Password, access token or key; never returned",
        # The limits are checked by check_password, whose messages name the
        # field (pydantic's own speak of "items"); the schema still shows them.
        json_schema_extra={"minLength": 1, "maxLength": MAX_PASSWORD},
    ),
]


# TODO(regflow#2): provider-specific logins are not modelled yet: ECR keys must be
# traded for a short-lived token, Google keys sent as `_json_key`, GAR hosts derived
# from a location. Until then every provider stores one username/secret pair.
class Credentials(oci.Credentials):
    """A username and its secret, as the registry's login takes them.

    The OCI client's credentials with the stored form's limits, so the pusher
    hands them to :class:`regflow.oci.RegistryClient` as they are.

    The pair is generic on purpose: a password or personal access token for most
    registries, ``_json_key`` plus the JSON key file for Google, the access key id
    plus the secret access key for ECR. A registry without login has no
    ``Credentials`` at all (``None``), never a half-empty pair.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    username: Username
    password: Password


def credentials_from(
    username: str | None, password: SecretStr | str | None
) -> Credentials | None:
    """Credentials from two optional parts: both, or neither (None).

    Raises:
        RegistryRuleViolation: on ``password`` or ``username``, when only the
            other one is given.
    """
    if username is None and password is None:
        return None
    if password is None:
        raise RegistryRuleViolation(
            "password", "a username needs a password (or access token)"
        )
    if username is None:
        raise RegistryRuleViolation("username", "a password needs a username")
    secret = password if isinstance(password, SecretStr) else SecretStr(password)
    try:
        return Credentials(username=username, password=secret)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        field = str(error["loc"][0]) if error["loc"] else "password"
        message = error["msg"].removeprefix("Value error, ")
        raise RegistryRuleViolation(field, message) from None


class _RegistryFields(BaseModel):
    """What every form of a registry integration shows: all but the secret."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    account_id: str = Field(min_length=1, max_length=128)
    name: RegistryName
    provider: Provider
    domain: Domain
    repository_prefix: RepositoryPrefix = None
    is_default: bool = False
    is_caching: bool = False
    created_at: AwareDatetime
    updated_at: AwareDatetime

    def view(self) -> RegistryView:
        """The integration as events show it: no credentials."""
        return RegistryView(
            name=self.name,
            provider=self.provider,
            domain=self.domain,
            repository_prefix=self.repository_prefix,
        )


class RegistryIntegration(_RegistryFields):
    """One registry connected to an account, with its account-wide flags.

    Holds the credentials in plain text: what a push or a connection test
    needs. Lists, reads and change results use :class:`RegistrySummary`, which
    needs no secret key.

    Valid by construction: field rules run on every instance, and the Docker Hub
    rules (:func:`regflow.registries.rules.check_provider_rules`) raise
    :class:`~regflow.registries.errors.RegistryRuleViolation` directly. Rules that
    span the account (unique names, one default, one caching registry) are kept
    by :class:`~regflow.registries.store.RegistryStore`.
    """

    credentials: Credentials | None = None

    @model_validator(mode="after")
    def _provider_rules(self) -> Self:
        check_provider_rules(
            self.provider,
            self.domain,
            self.repository_prefix,
            is_caching=self.is_caching,
        )
        return self


class RegistrySummary(_RegistryFields):
    """A registry integration without its secret, as lists and reads show it.

    ``username`` is the credentials' username, which is not secret. It is None
    without credentials, and also for credentials stored before the username
    was kept beside them whose token no configured key decrypts.
    """

    username: str | None = None
    has_credentials: bool = False
