"""The names and defaults the CLI shows in its options and help, without importing their owners.

`loop --help` must answer at once, and the modules that own these values import numpy,
scikit-learn and torch (modAL) at the top. So the CLI reads them here, and
tests/cli/test_startup.py pins every one to its owner: change the owner, and that test says
what to change here. (Once these constants live in a module without heavy imports, the CLI
imports them from there and this file goes.)
"""

from __future__ import annotations

# loop.core.strategies: STRATEGIES (names, in registry order) and DEFAULT_STRATEGY
STRATEGY_NAMES = ("margin-diverse", "margin", "least-confidence", "entropy", "entropy-diverse", "committee",
                  "ranked-batch", "random")
DEFAULT_STRATEGY = "margin-diverse"

# loop.labels.aggregation: METHODS and DEFAULT_METHOD
AGGREGATION_METHODS = ("majority", "dawid-skene", "majority-ds", "hierarchical-ds")
DEFAULT_METHOD = "hierarchical-ds"

# loop.core.relabel: DEFAULT_MODE (`--relabel`)
DEFAULT_RELABEL = "off"

# loop.curation.validate: the validator's thresholds
NEAR_THRESHOLD = 0.95
MINORITY_FRACTION = 0.1
MIN_CHARS = 3
