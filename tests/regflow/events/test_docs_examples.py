"""Every example message in docs/events.md validates against its topic's model."""

import re
from pathlib import Path

import pytest

from regflow.events import ALL_TOPICS

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[3] / "docs" / "events.md"
EXAMPLE = re.compile(
    r"<!-- example: (?P<topic>[\w.-]+) -->\s*```json\n(?P<body>.*?)```", re.DOTALL
)
TOPICS = {topic.name: topic for topic in ALL_TOPICS}


def _examples() -> list[tuple[str, str]]:
    return [(m["topic"], m["body"]) for m in EXAMPLE.finditer(DOC.read_text())]


def test_every_topic_has_an_example() -> None:
    """The page documents each topic with at least one example."""
    assert {topic for topic, _ in _examples()} == set(TOPICS)


@pytest.mark.parametrize(("topic", "body"), _examples())
def test_example_validates(topic: str, body: str) -> None:
    """The example decodes with the topic's model and keeps its key."""
    event = TOPICS[topic].decode(body.encode())
    assert TOPICS[topic].key(event)
    assert event.occurred_at.utcoffset() is not None
