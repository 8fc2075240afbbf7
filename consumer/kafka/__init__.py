"""Kafka around the loop: the local broker for the demo and tests, the async producer, the
receipt sink, the lag monitor, start-up checks, and reading a partition to its end."""
