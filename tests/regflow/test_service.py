"""The service harness as a process: start-up failures are loud and final."""

import os
import subprocess
import sys

import pytest

from deploy.stack import free_port
from regflow.service import CONFIGURATION_EXIT_CODE, STARTUP_FAILURE_EXIT_CODE

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_unreachable_redis_fails_start_up_with_its_own_status(
    kafka_bootstrap: str,
) -> None:
    """A service that cannot reach Redis exits at once with status 3 and says why."""
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
    assert b"resolver-svc: cannot start: Redis at redis://127.0.0.1:" in done.stderr
    assert b"(REGFLOW_REDIS_URL) does not answer" in done.stderr


def test_unusable_settings_exit_2_with_the_variable_named() -> None:
    """A bad setting is named by its environment variable; no traceback."""
    env = {**os.environ, "REGFLOW_HTTP_PORT": "not-a-port"}
    done = subprocess.run(
        [sys.executable, "-m", "cache_svc"],
        env=env,
        capture_output=True,
        timeout=45,
        check=False,
    )
    assert done.returncode == CONFIGURATION_EXIT_CODE
    assert done.stderr.startswith(b"cache-svc: configuration error: REGFLOW_HTTP_PORT")
    assert b"Traceback" not in done.stderr


def test_help_lists_the_environment_variables() -> None:
    """--help prints the settings with their defaults and starts nothing."""
    done = subprocess.run(
        [sys.executable, "-m", "pusher_svc", "--help"],
        capture_output=True,
        timeout=45,
        check=True,
    )
    assert b"REGFLOW_SECRET_KEYS" in done.stdout
    assert b"REGFLOW_BLOB_CONCURRENCY" in done.stdout
