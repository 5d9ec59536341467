"""Test-connection: does a registry answer ``/v2/`` and take these credentials?"""

from __future__ import annotations

import httpx
import structlog

from config_svc.registries.schemas import ConnectionTestResult
from regflow.oci import Credentials as OciCredentials
from regflow.oci import RegistryClient, RegistryError, RetryPolicy
from regflow.registries import Credentials

log = structlog.get_logger(__name__)


# TODO(regflow#2): the test proves the login only (GET /v2/); it does not check
# push permission on the repository prefix, which needs a scoped token or a
# blob-upload probe per provider.
class ConnectionTester:
    """Runs one ``GET /v2/`` per test with the real registry client.

    Registries listed in ``insecure_hosts`` (``REGFLOW_INSECURE_REGISTRIES``) are
    spoken to over plain HTTP: an entry ``host:port`` matches that port only, an
    entry ``host`` every port of the host. Everything else uses HTTPS. No
    retries: the operator sees the first answer, within ``timeout`` seconds per
    request.
    """

    def __init__(self, insecure_hosts: frozenset[str], *, timeout: float) -> None:
        self._insecure = frozenset(h.lower() for h in insecure_hosts)
        self._timeout = httpx.Timeout(timeout)

    def is_insecure(self, domain: str) -> bool:
        """Whether ``domain`` is spoken to over plain HTTP."""
        domain = domain.lower()
        host = domain.rsplit(":", 1)[0] if not domain.endswith("]") else domain
        return domain in self._insecure or host in self._insecure

    async def test(
        self, domain: str, credentials: Credentials | None
    ) -> ConnectionTestResult:
        """Ping ``domain``; a classified failure becomes ``ok: false``.

        Blocks for at most about two request timeouts (a Bearer registry needs
        the ping, a token request and the ping again). Never raises for what the
        registry does.
        """
        oci_credentials = (
            OciCredentials(username=credentials.username, password=credentials.password)
            if credentials is not None
            else None
        )
        client = RegistryClient(
            domain,
            credentials=oci_credentials,
            insecure=self.is_insecure(domain),
            timeout=self._timeout,
            retry=RetryPolicy.no_retries(),
        )
        try:
            async with client:
                await client.ping()
        except RegistryError as exc:
            log.info(
                "registry connection test failed",
                domain=domain,
                reason=exc.reason.value,
                status_code=exc.status_code,
            )
            return ConnectionTestResult(
                ok=False,
                reason=exc.reason,
                status_code=exc.status_code,
                message=str(exc),
            )
        log.info("registry connection test passed", domain=domain)
        return ConnectionTestResult(ok=True)
