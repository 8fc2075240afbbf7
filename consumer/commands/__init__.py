"""The commands beside `run`: replay, receipts, produce (with its JSON lines), demo, and the
--workers launcher."""
