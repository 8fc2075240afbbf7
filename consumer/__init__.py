"""mem0-deletion-consumer: Kafka deletion events in, Mem0 deletes out, at least once."""

__version__ = "0.1.0"
