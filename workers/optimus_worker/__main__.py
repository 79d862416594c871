"""Entry point of a TrainingJob's pods: ``python -m optimus_worker``."""

import sys

from optimus_worker.runtime import main

sys.exit(main())
