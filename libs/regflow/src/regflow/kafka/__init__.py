"""The Kafka runtime every service shares."""

from regflow.kafka.admin import ensure_topics
from regflow.kafka.consumer import EventConsumer, HandlerRetryPolicy
from regflow.kafka.delivery import ConsumerSpec, Delivery, Handler
from regflow.kafka.producer import (
    EventProducer,
    KafkaEventProducer,
    RecordingProducer,
    event_headers,
)

__all__ = [
    "ConsumerSpec",
    "Delivery",
    "EventConsumer",
    "EventProducer",
    "Handler",
    "HandlerRetryPolicy",
    "KafkaEventProducer",
    "RecordingProducer",
    "ensure_topics",
    "event_headers",
]
