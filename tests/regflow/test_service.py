"""The service harness as a process: start-up failures are loud and final."""

import os
import subprocess
import sys

import pytest

from deploy.stack import free_port
from regflow.service import STARTUP_FAILURE_EXIT_CODE

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_unreachable_redis_fails_start_up_with_its_own_status(
    kafka_bootstrap: str,
) -> None:
    """A service that cannot reach Redis exits at once with status 3, not 0."""
    env = {
        **os.environ,
        "REGFLOW_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "REGFLOW_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "REGFLOW_HTTP_PORT": str(free_port()),
        "REGFLOW_LOG_FORMAT": "json",
    }
    done = subprocess.run(
        [sys.executable, "-m", "resolver_svc"],
        env=env,
        capture_output=True,
        timeout=45,
        check=False,
    )
    assert done.returncode == STARTUP_FAILURE_EXIT_CODE
    assert b"start-up failed" in done.stderr
