import pytest
from pydantic import SecretStr

from regflow.oci.auth import (
    SWEEP_EVERY,
    Credentials,
    TokenCache,
    merge_scopes,
    parse_challenges,
    scope_items,
    scopes_for_request,
)

pytestmark = pytest.mark.unit


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        """The current fake time."""
        return self.now


def test_basic_challenge() -> None:
    """A Basic challenge gives the scheme and its realm."""
    [challenge] = parse_challenges(['Basic realm="regflow-registry"'])
    assert challenge.scheme == "basic"
    assert challenge.realm == "regflow-registry"
    assert challenge.scopes == []


def test_bearer_challenge_with_scope_containing_commas() -> None:
    """Quoted values keep their commas; scheme and names are case-insensitive."""
    header = (
        'BEARER Realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:samalba/my-app:pull,push"'
    )
    [challenge] = parse_challenges([header])
    assert challenge.scheme == "bearer"
    assert challenge.realm == "https://auth.docker.io/token"
    assert challenge.service == "registry.docker.io"
    assert challenge.scopes == ["repository:samalba/my-app:pull,push"]


def test_several_challenges_in_one_header_and_unquoted_values() -> None:
    """Two challenges in one value are split; unquoted values end at a comma."""
    header = 'Basic realm=simple, Bearer realm="https://t.example/token",service=reg'
    basic, bearer = parse_challenges([header])
    assert (basic.scheme, basic.realm) == ("basic", "simple")
    assert (bearer.scheme, bearer.realm, bearer.service) == (
        "bearer",
        "https://t.example/token",
        "reg",
    )


def test_escaped_quotes_and_several_scopes() -> None:
    """Backslash escapes are undone; a space-separated scope value gives a list."""
    header = (
        r'Bearer realm="https://t/token",error="say \"hi\"",'
        r'scope="repository:a:pull repository:b:pull,push"'
    )
    [challenge] = parse_challenges([header])
    assert challenge.params["error"] == 'say "hi"'
    assert challenge.scopes == ["repository:a:pull", "repository:b:pull,push"]


def test_challenges_from_several_headers_and_garbage() -> None:
    """Each header value is parsed; a value that is no challenge yields nothing."""
    challenges = parse_challenges(["", ",,", 'Bearer realm="r"', "Basic"])
    assert [c.scheme for c in challenges] == ["bearer", "basic"]
    assert challenges[1].params == {}


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/v2/", []),
        ("HEAD", "/v2/app/manifests/latest", ["repository:app:pull"]),
        ("GET", "/v2/a/b/c/blobs/sha256:00", ["repository:a/b/c:pull"]),
        ("POST", "/v2/team/app/blobs/uploads/", ["repository:team/app:pull,push"]),
        ("PUT", "/v2/team/app/blobs/uploads/u-1", ["repository:team/app:pull,push"]),
        ("DELETE", "/v2/t/app/blobs/uploads/u-1", ["repository:t/app:pull,push"]),
        ("DELETE", "/v2/t/app/manifests/sha256:00", ["repository:t/app:delete"]),
        # A repository may itself contain a "blobs" component.
        ("GET", "/v2/x/blobs/y/manifests/1.0", ["repository:x/blobs/y:pull"]),
    ],
)
def test_scope_from_request_path(method: str, path: str, expected: list[str]) -> None:
    """The scope a request needs follows from its method and repository path."""
    assert scopes_for_request(method, path) == expected


def test_a_mount_also_needs_pull_on_its_origin() -> None:
    """POST ?mount=&from= asks for pull on the repository it mounts from."""
    assert scopes_for_request(
        "POST", "/v2/team/b/blobs/uploads/", mount_from="team/a"
    ) == ["repository:team/b:pull,push", "repository:team/a:pull"]
    assert scopes_for_request(
        "POST", "/v2/team/b/blobs/uploads/", mount_from="team/b"
    ) == ["repository:team/b:pull,push"]


def test_merge_scopes_puts_push_first_and_unions_actions() -> None:
    """Actions of one resource are merged; the scope with push comes first."""
    merged = merge_scopes(
        ["repository:src:pull"],
        ["repository:dst:push", "repository:dst:pull", "registry:catalog:*"],
    )
    assert merged == [
        "repository:dst:push,pull",
        "repository:src:pull",
        "registry:catalog:*",
    ]


def test_merge_scopes_keeps_unparseable_scopes() -> None:
    """A scope that is not type:name:actions is passed on verbatim."""
    assert merge_scopes(["weird"], ["weird"]) == ["weird"]


def test_token_cache_honours_lifetime() -> None:
    """A token is served until shortly before it expires, then dropped."""
    clock = FakeClock()
    cache = TokenCache(clock=clock)
    scopes = scope_items(["repository:app:pull"])
    cache.put("reg:5000", "id", scopes, "tok-1", expires_in=60)

    clock.now += 50
    assert cache.get("reg:5000", "id", scopes) == "tok-1"
    # 10% of the lifetime (6 s) is kept as a margin.
    clock.now += 5
    assert cache.get("reg:5000", "id", scopes) is None


def test_token_cache_margin_is_capped() -> None:
    """Long-lived tokens are refreshed at most 30 s before they expire."""
    clock = FakeClock()
    cache = TokenCache(clock=clock)
    scopes = scope_items(["repository:app:pull"])
    cache.put("reg", "id", scopes, "tok", expires_in=3600)
    clock.now += 3569
    assert cache.get("reg", "id", scopes) == "tok"
    clock.now += 2
    assert cache.get("reg", "id", scopes) is None


def test_token_cache_reuses_a_covering_token_only_for_its_identity() -> None:
    """A pull,push token serves a pull; other credentials or hosts never see it."""
    cache = TokenCache(clock=FakeClock())
    push = scope_items(["repository:app:pull,push"])
    cache.put("reg", "alice", push, "tok-push", expires_in=300)

    assert cache.get("reg", "alice", scope_items(["repository:app:pull"])) == "tok-push"
    assert cache.get("reg", "alice", scope_items(["repository:other:pull"])) is None
    assert cache.get("reg", "bob", scope_items(["repository:app:pull"])) is None
    assert cache.get("other", "alice", scope_items(["repository:app:pull"])) is None


def test_token_cache_sweeps_expired_tokens() -> None:
    """A long-lived shared cache drops expired tokens of every registry."""
    clock = FakeClock()
    cache = TokenCache(clock=clock)
    for number in range(SWEEP_EVERY - 1):
        scopes = scope_items([f"repository:app-{number}:pull"])
        cache.put(f"reg-{number}", "id", scopes, "old", expires_in=60)
    clock.now += 120
    assert len(cache) == SWEEP_EVERY - 1
    cache.put("reg-new", "id", scope_items(["repository:x:pull"]), "new", 60)
    assert len(cache) == 1


def test_credentials_never_show_the_password() -> None:
    """Printing credentials masks the secret; the Basic header carries it."""
    credentials = Credentials(username="ci", password=SecretStr("s3cret"))
    assert "s3cret" not in repr(credentials)
    assert "s3cret" not in str(credentials)
    assert credentials.basic_header() == "Basic Y2k6czNjcmV0"
    other = Credentials(username="ci", password=SecretStr("other"))
    assert credentials.fingerprint() != other.fingerprint()
