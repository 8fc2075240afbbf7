"""`python -m consumer.sandbox`: the sandbox's command line (`cli.py`)."""

from consumer.sandbox.cli import main

main()
