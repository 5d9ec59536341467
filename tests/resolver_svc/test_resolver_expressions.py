"""``${{VAR}}`` expansion and the branch tag variables."""

import pytest

from regflow.events.common import TAG_RE
from resolver_svc.rules import (
    ResolutionError,
    ResolutionProblem,
    expand,
    normalize_branch_tag,
    with_derived_variables,
)

pytestmark = pytest.mark.unit


class TestExpand:
    """Expansion of expressions inside one field."""

    def test_text_without_expressions_is_unchanged(self) -> None:
        """Plain text passes through."""
        assert expand("v1.2", {}, field="tag") == "v1.2"

    def test_single_expression(self) -> None:
        """A whole-field expression becomes the variable's value."""
        assert expand("${{CF_BUILD_ID}}", {"CF_BUILD_ID": "42"}, field="tag") == "42"

    def test_concatenation_of_several_expressions_and_text(self) -> None:
        """Several expressions and literal text combine in order."""
        variables = {
            "CF_BRANCH_TAG_NORMALIZED": "master",
            "CF_SHORT_REVISION": "df6a04c",
        }
        text = "${{CF_BRANCH_TAG_NORMALIZED}}-${{CF_SHORT_REVISION}}"
        assert expand(text, variables, field="tag") == "master-df6a04c"

    def test_whitespace_inside_braces_is_tolerated(self) -> None:
        """``${{ NAME }}`` is the same as ``${{NAME}}``."""
        assert expand("x-${{ A }}", {"A": "1"}, field="tag") == "x-1"

    def test_undefined_variable_names_field_and_variable(self) -> None:
        """An undefined variable fails, naming the field and the variable."""
        with pytest.raises(ResolutionError) as caught:
            expand("${{NOPE}}", {}, field="image_name", registry="hub")
        assert caught.value.problem is ResolutionProblem.UNDEFINED_VARIABLE
        assert "NOPE" in caught.value.message
        assert "image_name" in caught.value.message
        assert caught.value.registry == "hub"

    def test_every_undefined_variable_is_named_once(self) -> None:
        """All undefined variables are listed, each once."""
        with pytest.raises(ResolutionError) as caught:
            expand("${{A}}-${{B}}-${{A}}-${{C}}", {"C": "c"}, field="tag")
        assert caught.value.message.endswith("A, B")

    def test_unclosed_expression_is_malformed(self) -> None:
        """A ``${{`` without ``}}`` is reported as malformed, not kept literally."""
        with pytest.raises(ResolutionError) as caught:
            expand("v-${{CF_BUILD_ID", {"CF_BUILD_ID": "1"}, field="tag")
        assert caught.value.problem is ResolutionProblem.MALFORMED_EXPRESSION

    def test_values_are_not_expanded_again(self) -> None:
        """A value holding an expression is inserted literally (single pass)."""
        assert expand("${{A}}", {"A": "${{B}}", "B": "b"}, field="tag") == "${{B}}"

    def test_empty_value_is_allowed_here(self) -> None:
        """Expansion itself accepts empty values; validation judges the result."""
        assert expand("a${{E}}b", {"E": ""}, field="tag") == "ab"


class TestNormalizeBranchTag:
    """CF_BRANCH -> a valid Docker tag."""

    @pytest.mark.parametrize(
        ("branch", "expected"),
        [
            ("main", "main"),
            ("feature/test", "feature_test"),
            ("Feature/ABC-12", "Feature_ABC-12"),
            ("v1.2.3", "v1.2.3"),
            ("-leading-dash", "_leading-dash"),
            (".hidden", "_hidden"),
            ("user@host+x", "user_host_x"),
            ("fix/über", "fix__ber"),
            ("a b", "a_b"),
        ],
    )
    def test_examples(self, branch: str, expected: str) -> None:
        """Illegal characters become ``_`` one for one; case is kept."""
        assert normalize_branch_tag(branch) == expected

    def test_long_branch_is_cut_to_128(self) -> None:
        """Tags are at most 128 characters."""
        tag = normalize_branch_tag("b/" * 100)
        assert tag is not None
        assert len(tag) == 128

    @pytest.mark.parametrize(
        "branch", ["feature/x", "-", ".", "@", "ü" * 300, "refs/tags/1.0", "_ok"]
    )
    def test_result_is_always_a_valid_tag(self, branch: str) -> None:
        """Whatever the branch, the normalized form is a valid tag."""
        tag = normalize_branch_tag(branch)
        assert tag is not None
        assert TAG_RE.fullmatch(tag)

    def test_empty_branch_has_no_tag(self) -> None:
        """An empty branch is no branch."""
        assert normalize_branch_tag("") is None


class TestDerivedVariables:
    """The platform's derived branch variables."""

    def test_derived_from_branch(self) -> None:
        """Both variables are computed from CF_BRANCH."""
        derived = with_derived_variables({"CF_BRANCH": "Feature/X"})
        assert derived["CF_BRANCH_TAG_NORMALIZED"] == "Feature_X"
        assert derived["CF_BRANCH_TAG_NORMALIZED_LOWER_CASE"] == "feature_x"

    def test_supplied_values_win(self) -> None:
        """Values the platform supplied are not overwritten."""
        derived = with_derived_variables(
            {"CF_BRANCH": "a/b", "CF_BRANCH_TAG_NORMALIZED": "given"}
        )
        assert derived["CF_BRANCH_TAG_NORMALIZED"] == "given"
        assert derived["CF_BRANCH_TAG_NORMALIZED_LOWER_CASE"] == "a_b"

    def test_nothing_derived_without_branch(self) -> None:
        """No branch, no derived variables."""
        assert with_derived_variables({"X": "1"}) == {"X": "1"}

    def test_input_is_not_modified(self) -> None:
        """The caller's mapping stays as it was."""
        variables = {"CF_BRANCH": "main"}
        with_derived_variables(variables)
        assert variables == {"CF_BRANCH": "main"}
