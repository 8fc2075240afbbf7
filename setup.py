"""The one compiled part: the event reader's scan (consumer/_scan.c).

Everything else is configured in pyproject.toml. The extension is optional: where no C compiler
is, the install goes on and the consumer uses the same scan in Python (consumer/event_reader.py).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("consumer._scan", ["consumer/_scan.c"], optional=True)])
