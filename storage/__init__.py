"""The datastore: paths, atomic writes, run records, state, locks and configuration.

Everything that touches the disk goes through this package so that the rules
(atomic publish, state after data, one lock per source) live in one place.
"""
