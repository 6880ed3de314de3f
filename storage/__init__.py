"""The datastore: paths, atomic writes, run records, state, locks and configuration.

Everything that touches the disk goes through this package so that the rules
(atomic publish, state after data, one lock per source) live in one place.
"""

# The tool's version, read by pyproject.toml (dynamic version) and written into every run record;
# a constant here costs nothing, where importlib.metadata would scan site-packages (~25 ms a run).
__version__ = "0.1.0"
