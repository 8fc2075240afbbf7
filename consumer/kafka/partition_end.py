"""Where a partition ends, for the commands that read a topic to its end (`replay`, `receipts`).

ListOffsets is not enough: Tansu answers it with the base offset of the last record batch + 1,
short of the end after a multi-record batch. Fetch answers carry the true high watermark, which
librdkafka keeps (`get_watermark_offsets(cached=True)`) once a fetch has come back, and a
partition EOF (`enable.partition.eof`) is reported exactly there.
"""

from __future__ import annotations

from confluent_kafka import Consumer, TopicPartition

__all__ = ["fetched_end", "partition_end"]


def fetched_end(reader: Consumer, tp: TopicPartition) -> int:
    """The high watermark of the last fetch answer for `tp`; -1 before the first one."""
    _, high = reader.get_watermark_offsets(tp, cached=True)
    return int(high)


def partition_end(
    reader: Consumer, tp: TopicPartition, listed_end: int, eof: int | None = None
) -> int:
    """The end as far as we know: the largest of the ListOffsets answer (`listed_end`), the
    last fetch answer's high watermark, and the offset where EOF was reported (if any)."""
    return max(listed_end, fetched_end(reader, tp), eof if eof is not None else -1)
