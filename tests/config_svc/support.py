"""Helpers shared by the config-svc tests."""

import httpx


class LeakGuard:
    """Secrets that must not appear in any response body of the test."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()
        self.checked = 0

    def add(self, secret: str) -> str:
        """Watch ``secret``; returns it for inline use."""
        self.secrets.add(secret)
        return secret

    async def check(self, response: httpx.Response) -> None:
        """Response hook for httpx: fail the test on a leaked secret."""
        body = (await response.aread()).decode(errors="replace")
        headers = str(response.headers)
        for secret in self.secrets:
            assert secret not in body, f"secret leaked in {response.request.url}"
            assert secret not in headers
        self.checked += 1
