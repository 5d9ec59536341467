"""The resolution rule: a completed step plus registries -> push commands."""

import uuid
from typing import Any, Literal

import pytest

from regflow.events import (
    FailureReason,
    ImageRef,
    Provider,
    PushCommand,
    PushFields,
    RegistryView,
    StepCompleted,
)
from resolver_svc.registries import AccountRegistries
from resolver_svc.rules import (
    ResolutionError,
    ResolutionProblem,
    push_id,
    resolve_step,
    unresolved_result,
)

pytestmark = pytest.mark.unit

DIGEST = "sha256:" + "ab" * 32
EVENT_ID = uuid.UUID("11111111-2222-3333-4444-555555555555")

HARBOR = RegistryView(
    name="harbor", provider=Provider.OTHER, domain="harbor.example.com"
)
ACR = RegistryView(
    name="acr",
    provider=Provider.ACR,
    domain="kostis.azurecr.io",
    repository_prefix="acme-company",
)
HUB = RegistryView(name="hub", provider=Provider.DOCKERHUB, domain="docker.io")


def registries(
    *views: RegistryView, default: str | None = "harbor"
) -> AccountRegistries:
    """An account view holding ``views`` (all three when none given)."""
    chosen = views or (HARBOR, ACR, HUB)
    return AccountRegistries(
        version=3, registries={v.name: v for v in chosen}, default_registry=default
    )


def step(
    step_type: Literal["build", "push"] = "push",
    *,
    status: Literal["succeeded", "failed"] = "succeeded",
    variables: dict[str, str] | None = None,
    repository: str = "team/web-app",
    **push: Any,
) -> StepCompleted:
    """A completed step with the given push fields."""
    return StepCompleted(
        pipeline_id="proj/pipe",
        build_id="b-1",
        step_name=step_type,
        step_type=step_type,
        status=status,
        image=ImageRef(registry="internal:5000", repository=repository, digest=DIGEST),
        push=PushFields.model_validate(push),
        variables={"CF_BRANCH": "main"} if variables is None else variables,
    )


def resolve(
    s: StepCompleted, view: AccountRegistries | None = None
) -> list[PushCommand]:
    """Resolve with the fixed event id."""
    return resolve_step(s, view or registries(), step_event_id=EVENT_ID)


def only(commands: list[PushCommand]) -> PushCommand:
    """The single command of a resolution."""
    assert len(commands) == 1
    return commands[0]


def failure(s: StepCompleted, view: AccountRegistries | None = None) -> ResolutionError:
    """The resolution error ``s`` raises."""
    with pytest.raises(ResolutionError) as caught:
        resolve(s, view)
    return caught.value


class TestPushStepDefaults:
    """Push steps with few fields."""

    def test_defaults_registry_image_name_and_tag(self) -> None:
        """Default registry, the source repository as name, and ``latest``."""
        command = only(resolve(step()))
        assert command.destination.registry == "harbor"
        assert command.destination.repository == "team/web-app"
        assert command.destination.tags == ["latest"]
        assert command.destination.references == [
            "harbor.example.com/team/web-app:latest"
        ]

    def test_carries_source_and_build(self) -> None:
        """The command copies the step's image and build context."""
        command = only(
            resolve(step(variables={"CF_BRANCH": "dev", "CF_REVISION": "abc"}))
        )
        assert command.source.digest == DIGEST
        assert command.source.registry == "internal:5000"
        assert command.build.pipeline_id == "proj/pipe"
        assert command.build.build_id == "b-1"
        assert command.build.branch == "dev"
        assert command.build.revision == "abc"

    def test_named_registry(self) -> None:
        """``registry`` picks the integration; its provider and domain follow."""
        command = only(resolve(step(registry="acr")))
        assert command.destination.registry == "acr"
        assert command.destination.provider is Provider.ACR
        assert command.destination.domain == "kostis.azurecr.io"

    def test_image_name_overrides_source_repository(self) -> None:
        """``image_name`` renames the image in the destination."""
        command = only(resolve(step(image_name="my-company/web")))
        assert command.destination.repository == "my-company/web"

    def test_several_tags_in_one_command(self) -> None:
        """``tags`` gives one command with every tag, duplicates dropped."""
        command = only(resolve(step(tags=["1.0", "stable", "1.0"])))
        assert command.destination.tags == ["1.0", "stable"]

    def test_push_step_keeps_tag_case(self) -> None:
        """Push steps have no lower-case policy."""
        command = only(resolve(step(tag="Release-1")))
        assert command.destination.tags == ["Release-1"]

    def test_push_step_ignores_disable_push(self) -> None:
        """A push step always pushes."""
        assert len(resolve(step(disable_push=True))) == 1

    def test_failed_push_step_produces_nothing(self) -> None:
        """No trustworthy image, no push and no failure."""
        assert resolve(step(status="failed")) == []


class TestBuildSteps:
    """The automatic push of build steps."""

    def test_pushes_to_default_with_branch_tag(self) -> None:
        """Default registry, tag = normalized branch, lower-cased."""
        command = only(resolve(step("build", variables={"CF_BRANCH": "Feature/Login"})))
        assert command.destination.registry == "harbor"
        assert command.destination.tags == ["feature_login"]

    def test_supplied_normalized_branch_is_used(self) -> None:
        """The platform's CF_BRANCH_TAG_NORMALIZED wins over ours."""
        variables = {"CF_BRANCH": "a/b", "CF_BRANCH_TAG_NORMALIZED": "a-b"}
        command = only(resolve(step("build", variables=variables)))
        assert command.destination.tags == ["a-b"]

    def test_latest_without_branch(self) -> None:
        """No branch known: ``latest``."""
        command = only(resolve(step("build", variables={})))
        assert command.destination.tags == ["latest"]

    def test_explicit_tags_are_lower_cased(self) -> None:
        """Tag policy ``lowercase`` applies to written tags too."""
        command = only(resolve(step("build", tags=["V1", "${{CF_BRANCH}}"])))
        assert command.destination.tags == ["v1", "main"]

    def test_failed_build_produces_nothing(self) -> None:
        """A failed build is never pushed, and that is not a failure."""
        assert resolve(step("build", status="failed")) == []

    def test_disable_push_produces_nothing(self) -> None:
        """``disable_push`` wins, even over a named registry."""
        assert resolve(step("build", disable_push=True, registry="acr")) == []

    def test_disable_push_needs_no_registries(self) -> None:
        """A build that is not pushed does not care about missing defaults."""
        assert resolve(step("build", disable_push=True), registries(default=None)) == []

    def test_named_registry_replaces_default(self) -> None:
        """A build naming another registry pushes there only."""
        command = only(resolve(step("build", registry="acr")))
        assert command.destination.registry == "acr"


class TestVariables:
    """Expressions in registry, image_name and tags."""

    VARS = {  # noqa: RUF012 - read-only test data
        "CF_BRANCH": "feature/x",
        "CF_SHORT_REVISION": "df6a04c",
        "CF_BUILD_ID": "6123",
        "TARGET": "acr",
        "TEAM": "web",
    }

    def test_registry_from_variable(self) -> None:
        """``registry: ${{TARGET}}`` resolves to the named integration."""
        command = only(resolve(step(registry="${{TARGET}}", variables=self.VARS)))
        assert command.destination.registry == "acr"

    def test_image_name_concatenation(self) -> None:
        """Expressions and text combine in image_name."""
        command = only(
            resolve(step(image_name="${{TEAM}}/app-${{TEAM}}", variables=self.VARS))
        )
        assert command.destination.repository == "web/app-web"

    def test_tag_concatenation_with_derived_variable(self) -> None:
        """Derived variables are available to tags."""
        command = only(
            resolve(
                step(
                    tags=[
                        "${{CF_BRANCH_TAG_NORMALIZED}}-${{CF_SHORT_REVISION}}",
                        "${{CF_BUILD_ID}}",
                    ],
                    variables=self.VARS,
                )
            )
        )
        assert command.destination.tags == ["feature_x-df6a04c", "6123"]

    def test_undefined_variable_in_tag(self) -> None:
        """An undefined variable fails, naming it; the registry is known."""
        error = failure(step(tag="${{CF_RELEASE_TAG}}", variables=self.VARS))
        assert error.problem is ResolutionProblem.UNDEFINED_VARIABLE
        assert "CF_RELEASE_TAG" in error.message
        assert error.registry == "harbor"

    def test_undefined_variable_in_registry_reports_the_expression(self) -> None:
        """Until it expands, the registry is reported as written."""
        error = failure(step(registry="${{NOPE}}", variables=self.VARS))
        assert error.problem is ResolutionProblem.UNDEFINED_VARIABLE
        assert error.registry == "${{NOPE}}"

    def test_invalid_tag_after_expansion(self) -> None:
        """A raw branch with ``/`` is no tag: the expanded value is validated."""
        error = failure(step(tag="${{CF_BRANCH}}", variables=self.VARS))
        assert error.problem is ResolutionProblem.INVALID_TAG
        assert "feature/x" in error.message

    def test_empty_expansion_is_an_invalid_tag(self) -> None:
        """An empty variable cannot be a tag on its own."""
        error = failure(step(tag="${{E}}", variables={"E": ""}))
        assert error.problem is ResolutionProblem.INVALID_TAG

    def test_registry_expanding_to_empty_fails(self) -> None:
        """An empty registry name is not the default."""
        error = failure(step(registry="${{E}}", variables={"E": " "}))
        assert error.problem is ResolutionProblem.UNKNOWN_REGISTRY


class TestReferences:
    """Prefixes, domains and names."""

    def test_prefix_inserted(self) -> None:
        """The reference is domain / prefix / image_name : tag."""
        command = only(resolve(step(registry="acr", image_name="trivial-go-web")))
        assert command.destination.references == [
            "kostis.azurecr.io/acme-company/trivial-go-web:latest"
        ]

    def test_prefix_not_doubled(self) -> None:
        """An image_name already under the prefix keeps it once."""
        command = only(
            resolve(step(registry="acr", image_name="acme-company/trivial-go-web"))
        )
        assert command.destination.repository == "acme-company/trivial-go-web"

    def test_prefix_matches_whole_components_only(self) -> None:
        """``acme-company-x`` is not under ``acme-company``."""
        command = only(resolve(step(registry="acr", image_name="acme-company-x/web")))
        assert command.destination.repository == "acme-company/acme-company-x/web"

    def test_image_name_equal_to_prefix_gets_prefix(self) -> None:
        """``acme-company`` alone is a repository inside the prefix."""
        command = only(resolve(step(registry="acr", image_name="acme-company")))
        assert command.destination.repository == "acme-company/acme-company"

    def test_prefix_slashes_are_trimmed(self) -> None:
        """A prefix written with slashes works like one without."""
        view = RegistryView(
            name="ghcr",
            provider=Provider.GHCR,
            domain="ghcr.io",
            repository_prefix="/me/",
        )
        command = only(resolve(step(registry="ghcr"), registries(view, default=None)))
        assert command.destination.references == ["ghcr.io/me/team/web-app:latest"]

    @pytest.mark.parametrize(
        "image_name",
        ["harbor.example.com/team/app", "localhost/app", "host:5000/app", "my.org/app"],
    )
    def test_image_name_with_domain_rejected(self, image_name: str) -> None:
        """The host comes from the integration; a host in image_name fails."""
        error = failure(step(image_name=image_name))
        assert error.problem is ResolutionProblem.INVALID_NAME
        assert "host" in error.message

    @pytest.mark.parametrize("image_name", ["team/app:1.0", "app@" + DIGEST])
    def test_image_name_with_tag_or_digest_rejected(self, image_name: str) -> None:
        """Tags belong in tag/tags."""
        error = failure(step(image_name=image_name))
        assert error.problem is ResolutionProblem.INVALID_NAME
        assert "tag or digest" in error.message

    def test_upper_case_name_rejected_with_suggestion(self) -> None:
        """Names are never lower-cased silently; the message suggests the fix."""
        error = failure(step(image_name="Team/App"))
        assert error.problem is ResolutionProblem.INVALID_NAME
        assert "'team/app'" in error.message
        assert error.registry == "harbor"

    @pytest.mark.parametrize("image_name", ["team//app", "team/-app", "a/", "tëam"])
    def test_invalid_names_rejected(self, image_name: str) -> None:
        """The repository grammar is enforced after composition."""
        assert (
            failure(step(image_name=image_name)).problem
            is ResolutionProblem.INVALID_NAME
        )

    def test_too_long_repository_rejected(self) -> None:
        """Repositories are at most 255 characters."""
        error = failure(step(image_name="a" * 250 + "/b" * 3))
        assert error.problem is ResolutionProblem.INVALID_NAME

    def test_registry_without_domain_fails(self) -> None:
        """An integration without a domain cannot be pushed to."""
        broken = RegistryView(name="broken", provider=Provider.OTHER, domain="")
        error = failure(step(), registries(broken, default="broken"))
        assert error.problem is ResolutionProblem.REGISTRY_MISCONFIGURED
        assert error.registry == "broken"

    def test_registry_with_path_in_domain_fails(self) -> None:
        """A path belongs in the prefix, not in the domain (GCR rule)."""
        broken = RegistryView(
            name="gcr", provider=Provider.GCR, domain="us.gcr.io/my_org"
        )
        error = failure(step(), registries(broken, default="gcr"))
        assert error.problem is ResolutionProblem.REGISTRY_MISCONFIGURED


class TestDockerHub:
    """Docker Hub naming."""

    def test_namespace_and_name_accepted(self) -> None:
        """``user/repo`` goes to docker.io."""
        command = only(resolve(step(registry="hub", image_name="kostis/demo")))
        assert command.destination.references == ["docker.io/kostis/demo:latest"]

    def test_missing_domain_is_a_broken_view(self) -> None:
        """The store always keeps docker.io; an empty domain is not filled in."""
        hub = RegistryView(name="hub", provider=Provider.DOCKERHUB, domain="")
        error = failure(step(image_name="kostis/demo"), registries(hub, default="hub"))
        assert error.problem is ResolutionProblem.REGISTRY_MISCONFIGURED
        assert error.registry == "hub"
        assert "has no domain" in error.message

    @pytest.mark.parametrize("image_name", ["demo", "org/team/demo"])
    def test_other_shapes_fail_clearly(self, image_name: str) -> None:
        """Anything but two components fails, saying how to fix it."""
        error = failure(step(registry="hub", image_name=image_name))
        assert error.problem is ResolutionProblem.INVALID_NAME
        assert "namespace/name" in error.message
        assert error.registry == "hub"


class TestRegistryChoice:
    """Unknown and missing registries."""

    def test_unknown_registry(self) -> None:
        """A name the account does not have fails and is reported."""
        error = failure(step(registry="quay"))
        assert error.problem is ResolutionProblem.UNKNOWN_REGISTRY
        assert error.registry == "quay"
        assert "'quay'" in error.message

    def test_no_default_registry(self) -> None:
        """No name and no default: failure without a registry."""
        error = failure(step("build"), registries(default=None))
        assert error.problem is ResolutionProblem.NO_DEFAULT_REGISTRY
        assert error.registry is None
        assert "disable_push" in error.message

    def test_no_registries_at_all(self) -> None:
        """An account never seen by the view has no default either."""
        error = failure(step(), AccountRegistries())
        assert error.problem is ResolutionProblem.NO_DEFAULT_REGISTRY

    def test_default_that_no_longer_exists(self) -> None:
        """A default naming a deleted registry is an unknown registry."""
        error = failure(step(), registries(HARBOR, default="gone"))
        assert error.problem is ResolutionProblem.UNKNOWN_REGISTRY
        assert error.registry == "gone"


class TestPushIds:
    """Push ids are stable for redeliveries and distinct otherwise."""

    def test_same_event_same_id(self) -> None:
        """Resolving the same event twice gives the same push id."""
        assert only(resolve(step())).push_id == only(resolve(step())).push_id

    def test_id_is_the_documented_uuid5(self) -> None:
        """The id is derived from event id, registry and repository."""
        command = only(resolve(step()))
        assert command.push_id == push_id(EVENT_ID, "harbor", "team/web-app")
        assert uuid.UUID(command.push_id).version == 5

    def test_other_event_other_id(self) -> None:
        """Another step event never shares an id."""
        other = resolve_step(step(), registries(), step_event_id=uuid.uuid4())
        assert only(other).push_id != only(resolve(step())).push_id

    def test_other_destination_other_id(self) -> None:
        """Another registry or repository gives another id."""
        ids = {
            only(resolve(step())).push_id,
            only(resolve(step(registry="acr"))).push_id,
            only(resolve(step(image_name="other/app"))).push_id,
        }
        assert len(ids) == 3

    def test_tags_do_not_change_the_id(self) -> None:
        """The id names the push to a repository, whatever its tags."""
        assert (
            only(resolve(step(tag="a"))).push_id == only(resolve(step(tag="b"))).push_id
        )


class TestUnresolvedResult:
    """The failed push result reporting a resolution error."""

    def test_result_fields(self) -> None:
        """UNRESOLVED, no destination, the registry named, the message kept."""
        s = step(registry="quay")
        error = failure(s)
        result = unresolved_result(s, error, step_event_id=EVENT_ID)
        assert result.destination is None
        assert result.registry == "quay"
        assert result.source == s.image
        assert result.build.build_id == "b-1"
        assert result.outcome.status == "failed"
        assert result.outcome.reason is FailureReason.UNRESOLVED
        assert result.outcome.message == error.message

    def test_result_id_is_stable(self) -> None:
        """A redelivered unresolvable step reports under the same push id."""
        s = step(registry="quay")
        first = unresolved_result(s, failure(s), step_event_id=EVENT_ID)
        again = unresolved_result(s, failure(s), step_event_id=EVENT_ID)
        assert first.push_id == again.push_id

    @pytest.mark.parametrize("domain", ["index.docker.io", "REGISTRY-1.docker.io:443"])
    def test_other_provider_on_a_docker_hub_host_gets_the_same_rule(
        self, domain: str
    ) -> None:
        """Docker Hub is recognised by its host too, not only by provider."""
        disguised = RegistryView(name="dh", provider=Provider.OTHER, domain=domain)
        error = failure(step(registry="dh", image_name="demo"), registries(disguised))
        assert error.problem is ResolutionProblem.INVALID_NAME
        assert "namespace/name" in error.message
