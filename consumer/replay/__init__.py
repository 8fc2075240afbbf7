"""`deletion-consumer replay`: dead letters back to the input topic (README "Replay").

One job per module:

- `options`: the command-line options, checked, and the selection's cursor group;
- `run`: one run: the DLQ read to the end it had at the start (`kafka.topic_scan`), each
  letter decided (`core.replay_rules`), the cursor committed past what is settled;
- `republish`: the chosen letters produced again, paced, and their acknowledgements;
- `report`: the progress line and the summary;
- `cli`: the command itself: options in, summary and exit code out, signals handled.

The rules that decide a letter and rewrite its headers are pure, in `core.replay_rules`.
"""

from __future__ import annotations

from consumer.replay.cli import run_replay
from consumer.replay.options import ReplayError, add_replay_arguments

__all__ = ["ReplayError", "add_replay_arguments", "run_replay"]
