from collections.abc import Callable, Sequence

from consumer.core.events import DeletionEvent, EventType
from consumer.core.receipts import InputRecord, OperationReport, Receipt

# Each receipt's value: `header` then its Avro body; `operations` encodes an operations tuple,
# asked once per run of receipts sharing one (consumer/avro/receipt_writer.py).
def values(
    receipts: Sequence[Receipt],
    header: bytes,
    operations: Callable[[tuple[OperationReport, ...]], bytes],
    /,
) -> list[bytes]: ...

# Each completed event's receipt (core/receipts.CompletedReceipts' parts) as a message:
# {"key": its event id, "value": `header` then the body `receipts.completed` gives}; `describe`
# returns an operations tuple's encoding and whether all were verified, asked once per run.
def completed(
    events: Sequence[DeletionEvent],
    operations: Sequence[tuple[OperationReport, ...]],
    completed_at: Sequence[int],
    group: str,
    records: Sequence[InputRecord],
    header: bytes,
    type_names: dict[EventType, str],
    describe: Callable[[tuple[OperationReport, ...]], tuple[bytes, bool]],
    /,
) -> list[dict[str, bytes]]: ...
