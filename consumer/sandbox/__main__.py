"""`python -m consumer.sandbox`: the sandbox's command line (`cli.py`)."""

import sys

from consumer.sandbox.cli import main

sys.exit(main())
