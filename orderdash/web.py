"""`python -m orderdash.web <daphne arguments>`: daphne, which also exits when stopped
with a request in flight.

On SIGTERM daphne stops accepting, cancels every application instance (its websockets
drop, and htmx reconnects through the proxy to another web process) and stops its loop.
A sync view still running in a thread at that moment waits for that loop for ever, and
Python's exit waits for the thread: the process hangs until the deploy kills it. Its
client is gone and its application cancelled, so once daphne has returned the process
exits without waiting for such threads.
"""

from __future__ import annotations

import logging
import os
import sys

from daphne.cli import CommandLineInterface


def main() -> None:
    code = 0
    try:
        CommandLineInterface().run(sys.argv[1:])
    except SystemExit as exit_:  # bad arguments: argparse already said why
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    main()
