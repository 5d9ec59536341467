"""The resolver's own view of each account's registry integrations."""

from resolver_svc.registries.model import AccountRegistries
from resolver_svc.registries.view import RegistryViewStore

__all__ = ["AccountRegistries", "RegistryViewStore"]
