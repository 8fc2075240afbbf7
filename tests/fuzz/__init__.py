"""The compiled scan's differential fuzz, under AddressSanitizer and UBSan (scan_fuzz.py says
how to run it; CI runs it in .ci/run). Not collected by pytest: it is a separate process with
the sanitizer runtimes preloaded, and a minute long."""
