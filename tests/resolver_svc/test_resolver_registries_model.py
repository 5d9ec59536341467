"""When an account's registry view counts as settled (no change on its way)."""

from datetime import UTC, datetime, timedelta

import pytest

from resolver_svc.registries import AccountRegistries

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, tzinfo=UTC)
GRACE = timedelta(seconds=5)


@pytest.mark.parametrize(
    ("view", "settled"),
    [
        (AccountRegistries(), False),  # never seen: its first change may be coming
        (AccountRegistries(version=3, changed_at=NOW - timedelta(seconds=1)), False),
        (AccountRegistries(version=3, changed_at=NOW - GRACE), True),
        (AccountRegistries(version=3, changed_at=NOW - timedelta(days=9)), True),
        (AccountRegistries(version=3), True),  # predates changed_at
    ],
)
def test_settled(view: AccountRegistries, *, settled: bool) -> None:
    """Unseen or recently changed views are not settled; quiet ones are."""
    assert view.settled(NOW, GRACE) is settled
