"""Exception types shared across the testbed. Catch these, not bare `Exception`."""


class TestbedError(Exception):
    """Base class of every error the testbed raises on purpose."""


class ConfigError(TestbedError, ValueError):
    """A configuration file or value is invalid; the message names the file, key and fix."""


class RadioError(TestbedError):
    """A radio failed to configure, stream, or was not found. ``error_code``: what a role
    process reports to its controller when a command fails with it (the radio is to blame)."""

    error_code = "radio_error"


class RadioNotFoundError(RadioError):
    """No device answered at the configured address (or the driver library is missing)."""


class StreamError(RadioError):
    """Underflow/overflow/late bursts beyond what the caller allowed."""


class DeprecatedSpellingWarning(FutureWarning):
    """An old spelling of an option or method name was used (it still works); the message
    names the new one. A FutureWarning, so Python shows it by default."""
