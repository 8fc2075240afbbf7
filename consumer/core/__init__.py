"""The pure logic: events and scopes, the planner, offsets, retry timing, pacing, the DLQ guard,
verification rules, receipts, dead-letter headers and replay rules. No I/O, no clock, no
randomness of its own; nothing here imports outside this folder (tests/unit/core/test_purity.py)."""
