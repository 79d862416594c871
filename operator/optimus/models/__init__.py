"""Step 3 of a scheduling round (pure): the Optimus loss (convergence) model and the
resource-speed model, each a frozen parameter tuple with its equation and a pure `fit_*`.
"""
