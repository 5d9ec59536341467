"""Content digests: compute them, and verify a byte stream while it passes through."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncGenerator, AsyncIterator

from regflow.oci.errors import RegistryDigestMismatchError

DIGEST_RE = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")


def is_digest(reference: str) -> bool:
    """Whether ``reference`` is a digest we can verify (sha256 or sha512)."""
    return DIGEST_RE.fullmatch(reference) is not None


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    """``algorithm:hex`` of ``data``."""
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def hasher_for(digest: str) -> hashlib._Hash:
    """A fresh hash object of the digest's algorithm."""
    if not is_digest(digest):
        raise ValueError(f"not a supported digest: {digest!r}")
    return hashlib.new(digest.split(":", 1)[0])


async def verified_chunks(
    chunks: AsyncIterator[bytes], *, digest: str, size: int | None, url: str | None
) -> AsyncGenerator[bytes, None]:
    """Pass ``chunks`` through, checking their total digest and size.

    The last chunk is held back until the source is exhausted and checked, so a
    consumer that forwards the chunks (an upload) never receives the complete
    content when it is wrong: the mismatch is raised instead of the last chunk.

    Raises:
        RegistryDigestMismatchError: the content does not hash to ``digest``, or
            its length differs from ``size``.
    """
    hasher = hasher_for(digest)
    received = 0
    held: bytes | None = None
    async for chunk in chunks:
        if not chunk:
            continue
        received += len(chunk)
        if size is not None and received > size:
            raise RegistryDigestMismatchError(
                f"blob {digest} is longer than its declared {size} bytes",
                expected=digest,
                actual=f"size>{size}",
                url=url,
            )
        if held is not None:
            hasher.update(held)
            yield held
        held = chunk
    if held is not None:
        hasher.update(held)
    if size is not None and received != size:
        raise RegistryDigestMismatchError(
            f"blob {digest} ended after {received} of {size} bytes",
            expected=digest,
            actual=f"size={received}",
            url=url,
        )
    actual = f"{hasher.name}:{hasher.hexdigest()}"
    if actual != digest:
        raise RegistryDigestMismatchError(
            f"blob content hashes to {actual}, not {digest}",
            expected=digest,
            actual=actual,
            url=url,
        )
    if held is not None:
        yield held
