"""The pure logic: no I/O, no clock and no randomness of its own (they are passed in).

This folder is the one list of the pure modules: nothing here imports outside it, and
tests/unit/core/test_purity.py walks it to hold every module to that.
"""
