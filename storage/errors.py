"""Typed errors that the CLI turns into one clear line and an exit code.

Library code raises these instead of printing, so the same failure reads the
same from the CLI, a test or another program.
"""

from __future__ import annotations


class AbiError(Exception):
    """Base class: `str(err)` is a complete, user-facing sentence."""

    exit_code = 1


class ConfigError(AbiError):
    """The configuration is invalid; nothing has been done (exit 2)."""

    exit_code = 2


class UsageError(AbiError):
    """The command line asks for something that cannot be done (exit 2)."""

    exit_code = 2


class StorageError(AbiError):
    """Writing to the datastore failed (disk full, permissions); stored data is intact."""


class SourceBusy(AbiError):
    """Another run holds the source's lock."""

    exit_code = 0
