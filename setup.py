"""The one compiled part: the event reader's scan (consumer/avro/_scan.c).

Everything else is configured in pyproject.toml. The extension is optional: where no C compiler
is, the install goes on and the consumer uses the same scan in Python (consumer/avro/event_reader.py).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("consumer.avro._scan", ["consumer/avro/_scan.c"], optional=True)])
