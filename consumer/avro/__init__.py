"""Bytes to events and receipts and back: the two wire framings (framing), the codec (schema
resolution), the event reader specialised for the shipped schemas (with its compiled scan,
_scan.c), the receipt codec and its specialised writer (compiled too, _receipt.c) and the
schema registry client."""
