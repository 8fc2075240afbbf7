"""librdkafka's lines through `KafkaLogger`: JSON with facility and client, one line per kind
and a reminder per window, from any thread; and every client configuration gets it."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer
from hypothesis import given
from hypothesis import strategies as st

from consumer.kafka.broker import free_port
from consumer.kafka.config import consumer_config, producer_config, with_logger
from consumer.kafka.topic_scan import reader_config
from consumer.settings import Settings
from consumer.telemetry.kafka_logs import KafkaLogger, kafka_logger, line_kind
from consumer.telemetry.logs import JsonFormatter

REFUSED = (
    "[thrd:127.0.0.1:9092/bootstrap]: 127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 "
    "failed: Connection refused (after {ms}ms in state CONNECT)"
)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[Records]:
    """What `consumer.kafka.test` logs, at INFO."""
    logger = logging.getLogger("consumer.kafka.test")
    handler = Records()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)


def _logger(clock: list[float]) -> KafkaLogger:
    return KafkaLogger(logging.getLogger("consumer.kafka.test"), clock=lambda: clock[0])


def _fail(kafka: KafkaLogger, ms: int = 0, client: str = "rdkafka#consumer-1") -> None:
    """One call as confluent-kafka's `log_cb` makes it (ERR mapped to ERROR)."""
    kafka.log(logging.ERROR, "%s [%s] %s", "FAIL", client, REFUSED.format(ms=ms))


# --- kinds ------------------------------------------------------------------------------------


def test_a_kind_drops_numbers_and_durations_but_keeps_addresses() -> None:
    assert line_kind(REFUSED.format(ms=12)) == (
        "127.0.0.1:9092/bootstrap: Connect to ipv4#127.0.0.1:9092 failed: Connection refused "
        "(after Nms in state CONNECT)"
    )
    assert line_kind("1/3 brokers are down") == "N/N brokers are down"
    assert line_kind("Timed out 3 in-flight, 1.5s ago") == "Timed out N in-flight, Ns ago"
    # A broker's name is its address and id: kept.
    assert line_kind("b-2:9092/2: gone (after 5ms)") == "b-2:9092/2: gone (after Nms)"
    assert line_kind("b-1:9092: down") != line_kind("b-2:9092: down")


@given(st.integers(0, 10**9), st.integers(0, 10**9))
def test_repeats_differing_only_in_their_timings_are_one_kind(a: int, b: int) -> None:
    assert line_kind(REFUSED.format(ms=a)) == line_kind(REFUSED.format(ms=b))


# --- the logger -------------------------------------------------------------------------------


def test_a_refusal_20_times_a_second_is_one_line_then_a_reminder_a_minute(
    records: Records,
) -> None:
    clock = [0.0]
    kafka = _logger(clock)
    for tick in range(20 * 130):  # 130 s; the producer's refusals too: the same kind
        clock[0] = tick / 20
        _fail(kafka, ms=tick % 7, client=f"rdkafka#{('consumer', 'producer')[tick % 2]}-1")
    lines = records.records
    assert [line.created for line in lines] == sorted(line.created for line in lines)
    assert len(lines) == 3
    first, reminder, _ = lines
    assert first.levelno == logging.ERROR
    assert first.getMessage() == REFUSED.format(ms=0).split("]: ", 1)[1]  # no thread prefix
    assert (first.facility, first.client) == ("FAIL", "rdkafka#consumer-1")  # type: ignore[attr-defined]
    assert reminder.repeated == 20 * 60  # type: ignore[attr-defined]
    assert reminder.getMessage().endswith("(repeated 1200 times in the last 60 s)")


def test_two_brokers_down_are_two_kinds(records: Records) -> None:
    kafka = _logger([0.0])
    for _ in range(10):
        for broker in ("b-1:9092", "b-2:9092"):
            kafka.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#consumer-1", f"{broker}: down")
    assert [line.getMessage() for line in records.records] == ["b-1:9092: down", "b-2:9092: down"]


def test_debug_lines_pass_unlimited_when_asked_for_and_cost_nothing_otherwise(
    records: Records,
) -> None:
    kafka = _logger([0.0])
    for _ in range(5):
        kafka.log(logging.DEBUG, "%s [%s] %s", "BROKER", "rdkafka#consumer-1", "[thrd:main]: x")
    assert records.records == []  # the logger is at INFO
    logging.getLogger("consumer.kafka.test").setLevel(logging.DEBUG)
    for _ in range(5):
        kafka.log(logging.DEBUG, "%s [%s] %s", "BROKER", "rdkafka#consumer-1", "[thrd:main]: x")
    assert [line.getMessage() for line in records.records] == ["x"] * 5


def test_a_line_is_json_with_its_facility_and_client(records: Records) -> None:
    _fail(_logger([0.0]))
    entry = json.loads(JsonFormatter().format(records.records[0]))
    assert entry["logger"] == "consumer.kafka.test"
    assert entry["level"] == "ERROR"
    assert (entry["facility"], entry["client"]) == ("FAIL", "rdkafka#consumer-1")


def test_a_call_of_another_shape_is_logged_not_raised(records: Records) -> None:
    kafka = _logger([0.0])
    kafka.log(logging.WARNING, "plain %d", 3)
    kafka.log(logging.WARNING, "bad %d", "x")  # would raise in `%`
    assert [line.getMessage() for line in records.records] == ["plain 3", "bad %d x"]


def test_calls_from_many_threads_log_a_kind_once_and_count_every_repeat(
    records: Records,
) -> None:
    clock = [0.0]
    kafka = _logger(clock)
    start = threading.Barrier(8)

    def hammer() -> None:
        start.wait()
        for ms in range(2000):
            _fail(kafka, ms)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(records.records) == 1
    clock[0] = 60.0  # back after a quiet minute: it says how many it did not log
    _fail(kafka)
    assert records.records[-1].repeated_before == 8 * 2000 - 1  # type: ignore[attr-defined]


def test_librdkafka_calls_it_with_facility_client_and_message_on_poll(records: Records) -> None:
    # A real client, nothing listening: librdkafka reports the refused connection through the
    # logger, on the thread that polls (confluent-kafka sets log.queue).
    reader = Consumer(
        {
            "bootstrap.servers": f"127.0.0.1:{free_port()}",
            "group.id": "kafka-logs-test",
            "logger": _logger([0.0]),
        }
    )
    try:
        deadline = time.monotonic() + 10
        while not records.records and time.monotonic() < deadline:
            reader.poll(0.1)
    finally:
        reader.close()
    assert records.records, "no librdkafka line in 10 s"
    line = records.records[0]
    assert line.facility == "FAIL"  # type: ignore[attr-defined]
    assert line.client.startswith("rdkafka#consumer-")  # type: ignore[attr-defined]
    assert "Connection refused" in line.getMessage()
    assert not line.getMessage().startswith("[thrd:")
    assert len(records.records) == 1  # a second's worth of refusals, one line


# --- every client gets it ---------------------------------------------------------------------


def test_every_client_configuration_is_given_the_process_logger() -> None:
    settings = Settings.from_sources({"MEM0_API_KEY": "k"})
    plain = consumer_config(settings)
    assert "logger" not in plain and "logger" not in producer_config(settings)
    assert with_logger(plain)["logger"] is kafka_logger()
    assert "logger" not in plain  # not changed in place
    scan = reader_config(plain, group="g", reset="earliest")
    assert scan["logger"] is kafka_logger()
