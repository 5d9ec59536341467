import pytest

from pusher_svc.engine import BlobLocations

pytestmark = pytest.mark.unit

REGISTRY = ("registry.example", "identity-a")


def test_remembers_the_latest_repository_per_registry_and_identity() -> None:
    """A digest maps to the last repository seen; other identities see nothing."""
    locations = BlobLocations()
    locations.remember(REGISTRY, "sha256:1", "team/a")
    locations.remember(REGISTRY, "sha256:1", "team/b")
    assert locations.find(REGISTRY, "sha256:1") == "team/b"
    assert locations.find(("registry.example", "identity-b"), "sha256:1") is None
    assert locations.find(("other.example", "identity-a"), "sha256:1") is None


def test_least_recently_used_entries_are_dropped() -> None:
    """Beyond max_entries the entry used longest ago goes first."""
    locations = BlobLocations(max_entries=2)
    locations.remember(REGISTRY, "sha256:1", "r")
    locations.remember(REGISTRY, "sha256:2", "r")
    assert locations.find(REGISTRY, "sha256:1") == "r"  # now the most recent
    locations.remember(REGISTRY, "sha256:3", "r")
    assert len(locations) == 2
    assert locations.find(REGISTRY, "sha256:2") is None
    assert locations.find(REGISTRY, "sha256:1") == "r"
    with pytest.raises(ValueError, match="max_entries"):
        BlobLocations(max_entries=0)
