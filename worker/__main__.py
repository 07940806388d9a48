"""`python -m worker`: run the worker under a supervisor that restarts it after a crash.

`python -m worker --once` runs a single worker process with no supervisor.
"""

import sys

from worker.supervisor import supervise

if __name__ == "__main__":
    if "--once" in sys.argv[1:]:
        from worker.main import main

        main()
    else:
        sys.exit(supervise("worker", "worker"))
