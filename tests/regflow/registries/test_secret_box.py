"""SecretBox: Fernet encryption of stored credentials, with key rotation."""

import subprocess
import sys

import pytest
from pydantic import SecretStr

from regflow.errors import ConfigurationError
from regflow.registries import (
    SecretBox,
    SecretDecryptionError,
    SecretKeyError,
)
from regflow.registries import __main__ as key_command

pytestmark = pytest.mark.unit


def test_round_trip_hides_the_plaintext() -> None:
    """What is encrypted decrypts back, and the token does not contain it."""
    box = SecretBox([SecretBox.generate_key()])
    token = box.encrypt(b"hunter2-password")
    assert b"hunter2" not in token
    assert box.decrypt(token) == b"hunter2-password"


def test_rotation_first_key_encrypts_every_key_decrypts() -> None:
    """A new first key still reads old tokens; rotate moves them to the new key."""
    old, new = SecretBox.generate_key(), SecretBox.generate_key()
    token = SecretBox([old]).encrypt(b"value")
    during = SecretBox.from_setting(SecretStr(f"{new}, {old}"))
    assert during.decrypt(token) == b"value"
    rotated = during.rotate(token)
    after = SecretBox([new])
    assert after.decrypt(rotated) == b"value"
    with pytest.raises(SecretDecryptionError):
        after.decrypt(token)


def test_tampered_token_is_refused() -> None:
    """A changed token does not decrypt to anything."""
    box = SecretBox([SecretBox.generate_key()])
    token = bytearray(box.encrypt(b"value"))
    token[-5] ^= 1
    with pytest.raises(SecretDecryptionError):
        box.decrypt(bytes(token))


@pytest.mark.parametrize("setting", ["", " , ", "not-a-key", "abc,def"])
def test_unusable_keys_refuse_to_start(setting: str) -> None:
    """No key, or a value that is not a key, is a configuration error."""
    with pytest.raises(SecretKeyError) as caught:
        SecretBox.from_setting(setting)
    assert isinstance(caught.value, ConfigurationError)
    assert "REGFLOW_SECRET_KEYS" in str(caught.value)
    assert "generate one with `python -m regflow.registries`" in str(caught.value)


def test_bad_key_error_names_the_position_not_the_value() -> None:
    """The error says which key is wrong without printing any key."""
    good = SecretBox.generate_key()
    with pytest.raises(SecretKeyError) as caught:
        SecretBox.from_setting(f"{good},my-secret-oops")
    assert "key 2" in str(caught.value)
    assert "my-secret-oops" not in str(caught.value)
    assert good not in str(caught.value)


def test_key_generator_prints_a_usable_key(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m regflow.registries`` prints a key SecretBox accepts."""
    assert key_command.main([]) == 0
    key = capsys.readouterr().out.strip()
    assert SecretBox.from_setting(key).decrypt(SecretBox([key]).encrypt(b"x")) == b"x"


def test_key_generator_help_and_usage_errors(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--help prints one usage line and no key; anything else is a usage error."""
    assert key_command.main(["--help"]) == 0
    help_text = capsys.readouterr().out
    assert help_text.count("\n") == 1
    assert help_text.startswith("usage: python -m regflow.registries")
    assert key_command.main(["--bogus"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("usage:")


@pytest.mark.parametrize("args", [[], ["--help"]])
def test_key_command_runs_without_warnings(args: list[str]) -> None:
    """Run as a module with warnings as errors: exit 0, nothing on stderr."""
    completed = subprocess.run(
        [sys.executable, "-W", "error", "-m", "regflow.registries", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (completed.returncode, completed.stderr) == (0, "")
    lines = completed.stdout.splitlines()
    assert len(lines) == 1
    if args:
        assert lines[0].startswith("usage: python -m regflow.registries")
    else:
        SecretBox([lines[0]])
