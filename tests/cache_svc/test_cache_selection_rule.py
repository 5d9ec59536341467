"""The recommendation rule over fixed image records (no Redis)."""

from datetime import UTC, datetime, timedelta

import pytest

from cache_svc.records import ImageRecord, PushedReference, normalize_platform
from cache_svc.records.layout import key_part
from cache_svc.records.model import split_reference
from cache_svc.selection import IndexedImage, Match, recommend

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def digest(n: int) -> str:
    """A distinct valid digest per number."""
    return "sha256:" + f"{n:064x}"


def image(
    n: int,
    branch: str,
    minutes: int,
    *,
    refs: tuple[tuple[str, str, int], ...] = (),
    internal: str = "internal:5000",
) -> IndexedImage:
    """Image ``n`` built on ``branch`` at T0+minutes, pushed as ``refs``.

    ``refs`` holds (reference, registry, pushed minutes after T0).
    """
    record = ImageRecord(
        account_id="a",
        repository="team/app",
        digest=digest(n),
        source=f"{internal}/team/app@{digest(n)}",
        built_at=T0 + timedelta(minutes=minutes),
        branch=branch,
        revision=f"rev{n}",
        pipeline_id="p",
        build_id=f"b{n}",
        platforms=("linux/amd64",),
        references=tuple(
            PushedReference(
                reference=ref,
                registry=registry,
                pushed_at=T0 + timedelta(minutes=pushed),
                digest=digest(n),
            )
            for ref, registry, pushed in refs
        ),
    )
    return IndexedImage(record=record, branch=branch, built_at=record.built_at or T0)


class TestChoice:
    """Which images are chosen, in which order."""

    def test_same_branch_then_default_branch(self) -> None:
        """Newest on the branch first, newest on main second."""
        result = recommend(
            branch="feat",
            default_branch="main",
            on_branch=[image(1, "feat", 5), image(2, "feat", 9)],
            on_default_branch=[image(3, "main", 20), image(4, "main", 1)],
            caching_registry=None,
        )
        assert [(c.match, c.digest) for c in result.candidates] == [
            (Match.BRANCH, digest(2)),
            (Match.DEFAULT_BRANCH, digest(3)),
        ]

    def test_default_branch_when_branch_has_nothing(self) -> None:
        """A new branch falls back to the default branch alone."""
        result = recommend(
            branch="new",
            default_branch="main",
            on_branch=[],
            on_default_branch=[image(3, "main", 20)],
            caching_registry=None,
        )
        assert [(c.match, c.digest) for c in result.candidates] == [
            (Match.DEFAULT_BRANCH, digest(3))
        ]

    def test_nothing_found(self) -> None:
        """No images: no candidates, no references, no error."""
        result = recommend(
            branch="x",
            default_branch="main",
            on_branch=[],
            on_default_branch=[],
            caching_registry=None,
        )
        assert result.candidates == ()
        assert result.references == []

    def test_same_image_on_both_branches_listed_once(self) -> None:
        """The fallback is dropped when it is the same digest."""
        result = recommend(
            branch="feat",
            default_branch="main",
            on_branch=[image(7, "feat", 5)],
            on_default_branch=[image(7, "main", 6)],
            caching_registry=None,
        )
        assert [c.digest for c in result.candidates] == [digest(7)]

    def test_branch_is_the_default_branch(self) -> None:
        """Building main: one candidate, matched as the branch itself."""
        result = recommend(
            branch="main",
            default_branch="main",
            on_branch=[image(9, "main", 99)],
            on_default_branch=[image(3, "main", 20)],
            caching_registry=None,
        )
        assert [(c.match, c.digest) for c in result.candidates] == [
            (Match.BRANCH, digest(3))
        ]

    def test_no_branch_given(self) -> None:
        """Without a branch only the default branch is consulted."""
        result = recommend(
            branch=None,
            default_branch="main",
            on_branch=[image(1, "x", 50)],
            on_default_branch=[image(3, "main", 20)],
            caching_registry=None,
        )
        assert [(c.match, c.digest) for c in result.candidates] == [
            (Match.DEFAULT_BRANCH, digest(3))
        ]

    def test_tie_broken_by_digest(self) -> None:
        """Equal build times give a stable answer."""
        images = [image(1, "main", 5), image(2, "main", 5)]
        for ordered in (images, list(reversed(images))):
            result = recommend(
                branch=None,
                default_branch="main",
                on_branch=[],
                on_default_branch=ordered,
                caching_registry=None,
            )
            assert result.candidates[0].digest == digest(2)

    def test_candidate_fields(self) -> None:
        """A candidate carries what a caller needs to judge it."""
        result = recommend(
            branch="feat",
            default_branch="main",
            on_branch=[image(2, "feat", 9)],
            on_default_branch=[],
            caching_registry=None,
        )
        [candidate] = result.candidates
        assert candidate.branch == "feat"
        assert candidate.revision == "rev2"
        assert candidate.build_id == "b2"
        assert candidate.built_at == T0 + timedelta(minutes=9)
        assert candidate.platforms == ("linux/amd64",)


class TestReferences:
    """How each candidate's references are pinned and ordered."""

    REFS = (
        ("hub.example/team/app:old", "hub", 1),
        ("cache.example/team/app:main", "cache", 2),
        ("mirror.example/team/app:new", "mirror", 3),
    )

    def test_caching_registry_first_then_newest_push(self) -> None:
        """Caching-registry references lead; then newest push; internal last."""
        result = recommend(
            branch=None,
            default_branch="main",
            on_branch=[],
            on_default_branch=[image(1, "main", 0, refs=self.REFS)],
            caching_registry="cache",
        )
        refs = [r.reference for r in result.candidates[0].references]
        assert refs == [
            f"cache.example/team/app@{digest(1)}",
            f"mirror.example/team/app@{digest(1)}",
            f"hub.example/team/app@{digest(1)}",
            f"internal:5000/team/app@{digest(1)}",
        ]
        assert result.candidates[0].references[-1].registry is None
        assert result.references == [f"cache.example/team/app@{digest(1)}"]

    def test_without_caching_registry_newest_push_first(self) -> None:
        """No caching registry known: order by push time."""
        result = recommend(
            branch=None,
            default_branch="main",
            on_branch=[],
            on_default_branch=[image(1, "main", 0, refs=self.REFS)],
            caching_registry=None,
        )
        assert result.references == [f"mirror.example/team/app@{digest(1)}"]

    def test_moved_tag_is_not_recommended_for_the_older_image(self) -> None:
        """Both images were pushed as ``:main``; each candidate pins its own."""
        main = ("hub.example/team/app:main", "hub", 0)
        result = recommend(
            branch="feat",
            default_branch="main",
            on_branch=[image(1, "feat", 1, refs=(main,))],
            on_default_branch=[image(2, "main", 5, refs=(main,))],
            caching_registry=None,
        )
        assert result.references == [
            f"hub.example/team/app@{digest(1)}",
            f"hub.example/team/app@{digest(2)}",
        ]
        assert [c.references[0].tags for c in result.candidates] == [
            ("main",),
            ("main",),
        ]

    def test_tags_of_one_repository_become_one_reference(self) -> None:
        """Equal once pinned: listed once, with every tag and the newest push."""
        refs = (
            ("127.0.0.1:5000/team/app:v1", "local", 1),
            ("127.0.0.1:5000/team/app:main", "local", 4),
            ("127.0.0.1:5000/team/app:latest", "local", 2),
            ("hub.example/team/app:main", "hub", 3),
        )
        result = recommend(
            branch=None,
            default_branch="main",
            on_branch=[],
            on_default_branch=[image(1, "main", 0, refs=refs)],
            caching_registry=None,
        )
        [candidate] = result.candidates
        assert [(r.reference, r.registry, r.tags) for r in candidate.references] == [
            (f"127.0.0.1:5000/team/app@{digest(1)}", "local", ("latest", "main", "v1")),
            (f"hub.example/team/app@{digest(1)}", "hub", ("main",)),
            (f"internal:5000/team/app@{digest(1)}", None, ()),
        ]
        assert candidate.references[0].pushed_at == T0 + timedelta(minutes=4)

    def test_push_into_the_internal_repository_is_listed_once(self) -> None:
        """A pushed reference equal to the internal one replaces it."""
        refs = (("internal:5000/team/app:main", "internal", 1),)
        result = recommend(
            branch=None,
            default_branch="main",
            on_branch=[],
            on_default_branch=[image(1, "main", 0, refs=refs)],
            caching_registry=None,
        )
        [candidate] = result.candidates
        assert [(r.reference, r.registry) for r in candidate.references] == [
            (f"internal:5000/team/app@{digest(1)}", "internal")
        ]

    @pytest.mark.parametrize(
        ("reference", "expected"),
        [
            ("hub.example/team/app:main", ("hub.example/team/app", "main")),
            ("127.0.0.1:5000/team/app:v1", ("127.0.0.1:5000/team/app", "v1")),
            ("127.0.0.1:5000/team/app", ("127.0.0.1:5000/team/app", None)),
            (f"h:1/team/app:t@{digest(1)}", ("h:1/team/app", "t")),
            (f"h:1/team/app@{digest(1)}", ("h:1/team/app", None)),
        ],
    )
    def test_split_reference(
        self, reference: str, expected: tuple[str, str | None]
    ) -> None:
        """A port's ``:`` is never taken for a tag."""
        assert split_reference(reference) == expected

    def test_unpushed_image_offers_internal_reference(self) -> None:
        """An image never pushed is pulled from the internal registry."""
        result = recommend(
            branch="feat",
            default_branch="main",
            on_branch=[image(1, "feat", 0)],
            on_default_branch=[image(2, "main", 0, refs=self.REFS)],
            caching_registry="cache",
        )
        assert result.references == [
            f"internal:5000/team/app@{digest(1)}",
            f"cache.example/team/app@{digest(2)}",
        ]


class TestPlatformsAndKeys:
    """Platform spelling and key parts."""

    @pytest.mark.parametrize(
        ("given", "expected"),
        [
            ("linux/amd64", "linux/amd64"),
            (" Linux/AMD64 ", "linux/amd64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/arm/v7", "linux/arm/v7"),
            ("unknown/unknown", None),
            ("", None),
        ],
    )
    def test_normalize_platform(self, given: str, expected: str | None) -> None:
        """One spelling per platform; attestation entries are no platform."""
        assert normalize_platform(given) == expected

    def test_key_part_escapes_separators(self) -> None:
        """``:`` and ``%`` cannot be confused with key structure."""
        assert key_part("a:b%c") == "a%3Ab%25c"
        assert key_part("feature/x") == "feature/x"
