"""The compiled parts: the event reader's scan (consumer/avro/_scan.c) and the receipt writer
(consumer/avro/_receipt.c).

Everything else is configured in pyproject.toml. The extensions are optional: where no C compiler
is, the install goes on and the consumer uses the same code in Python
(consumer/avro/event_reader.py, consumer/avro/receipt_writer.py).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("consumer.avro._scan", ["consumer/avro/_scan.c"], optional=True),
        Extension("consumer.avro._receipt", ["consumer/avro/_receipt.c"], optional=True),
    ]
)
