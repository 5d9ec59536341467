"""``${{VAR}}`` expressions and the branch-derived tag variables.

Expansion is a single pass: a variable's value is inserted as it is and is not
expanded again, so a value that itself contains ``${{...}}`` stays literal (and
then fails name or tag validation rather than expanding unpredictably).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from resolver_svc.rules.errors import ResolutionError, ResolutionProblem

BRANCH: Final = "CF_BRANCH"
BRANCH_TAG_NORMALIZED: Final = "CF_BRANCH_TAG_NORMALIZED"
BRANCH_TAG_NORMALIZED_LOWER_CASE: Final = "CF_BRANCH_TAG_NORMALIZED_LOWER_CASE"

# Whitespace inside the braces is tolerated ("${{ CF_BRANCH }}"); names may hold
# dots, like the platform's "steps.build.imageId".
_EXPRESSION = re.compile(r"\$\{\{\s*([^{}\s]+)\s*\}\}")
_OPENER: Final = "${{"
_TAG_ILLEGAL = re.compile(r"[^A-Za-z0-9_.-]")
_TAG_MAX_LENGTH: Final = 128


def normalize_branch_tag(branch: str) -> str | None:
    """``branch`` made into a valid Docker tag, or None for an empty branch.

    Every character outside ``[A-Za-z0-9_.-]`` becomes ``_`` one for one
    (``feature/x`` -> ``feature_x``, ``ü`` -> ``_``), a leading ``.`` or ``-``
    becomes ``_`` (a tag cannot start with either), and the result is cut to 128
    characters. Case is kept; the ``_LOWER_CASE`` variant lower-cases it.
    """
    if not branch:
        return None
    tag = _TAG_ILLEGAL.sub("_", branch)
    if tag[0] in ".-":
        tag = "_" + tag[1:]
    return tag[:_TAG_MAX_LENGTH]


def with_derived_variables(variables: Mapping[str, str]) -> dict[str, str]:
    """The build's variables plus the branch tag variables it did not supply.

    A value the platform supplied always wins over a derived one.
    """
    derived = dict(variables)
    normalized = normalize_branch_tag(variables.get(BRANCH, ""))
    if normalized is not None:
        derived.setdefault(BRANCH_TAG_NORMALIZED, normalized)
        derived.setdefault(BRANCH_TAG_NORMALIZED_LOWER_CASE, normalized.lower())
    return derived


def expand(
    text: str,
    variables: Mapping[str, str],
    *,
    field: str,
    registry: str | None = None,
) -> str:
    """``text`` with every ``${{NAME}}`` replaced by its variable's value.

    Several expressions and literal text may be mixed
    (``${{CF_BRANCH_TAG_NORMALIZED}}-${{CF_SHORT_REVISION}}``). Raises
    ResolutionError naming ``field`` and every undefined variable, or when a
    ``${{`` is never closed. ``registry`` is carried into the error.
    """
    parts: list[str] = []
    undefined: list[str] = []
    position = 0
    for match in _EXPRESSION.finditer(text):
        parts.append(_literal(text[position : match.start()], field, registry))
        name = match.group(1)
        value = variables.get(name)
        if value is None:
            if name not in undefined:
                undefined.append(name)
        else:
            parts.append(value)
        position = match.end()
    parts.append(_literal(text[position:], field, registry))
    if undefined:
        names = ", ".join(undefined)
        raise ResolutionError(
            ResolutionProblem.UNDEFINED_VARIABLE,
            f"{field} {text!r} uses undefined variable(s): {names}",
            registry=registry,
        )
    return "".join(parts)


def _literal(text: str, field: str, registry: str | None) -> str:
    if _OPENER in text:
        raise ResolutionError(
            ResolutionProblem.MALFORMED_EXPRESSION,
            f"{field} has a '${{{{' without a closing '}}}}': {text!r}",
            registry=registry,
        )
    return text
