"""The one error the models raise (pure): degenerate input that no fit can make sense of.

The operator turns it into a job condition, the CLI into exit code 2; neither ever sees a
silent NaN from a fit.
"""

from __future__ import annotations


class ModelError(ValueError):
    """Input a model cannot be fitted to or evaluated on; the message says what and the fix."""
