"""Test-connection: does a registry answer ``/v2/`` and take these credentials?"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import structlog

from config_svc.registries.schemas import ConnectionTestResult
from regflow.oci import RegistryClient, RegistryError, RetryPolicy
from regflow.registries import Credentials

log = structlog.get_logger(__name__)


# TODO(regflow#2): the test proves the login only (GET /v2/); it does not check
# push permission on the repository prefix, which needs a scoped token or a
# blob-upload probe per provider.
class ConnectionTester:
    """Runs one ``GET /v2/`` per test with the real registry client.

    Registries for which ``is_insecure`` holds are spoken to over plain HTTP,
    everything else over HTTPS; the service passes
    :meth:`regflow.settings.CommonSettings.is_insecure_registry`
    (``REGFLOW_INSECURE_REGISTRIES``). No retries: the operator sees the first
    answer, within ``timeout`` seconds per request.
    """

    def __init__(self, is_insecure: Callable[[str], bool], *, timeout: float) -> None:
        self.is_insecure = is_insecure
        self._timeout = httpx.Timeout(timeout)

    async def test(
        self, domain: str, credentials: Credentials | None
    ) -> ConnectionTestResult:
        """Ping ``domain``; a classified failure becomes ``ok: false``.

        Blocks for at most about two request timeouts (a Bearer registry needs
        the ping, a token request and the ping again). Never raises for what the
        registry does.
        """
        client = RegistryClient(
            domain,
            credentials=credentials,
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
