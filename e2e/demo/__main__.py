"""`python -m e2e.demo` (what `make demo` runs); see e2e/demo/run.py."""

import sys

from e2e.demo.run import main

sys.exit(main())
