"""Exceptions of the log simulator.

::

    SimulatorError
    ├── ConfigurationError   a flag or environment variable makes no sense (unknown anomaly kind, bad service spec)
    └── ReplayFileError      a replay or labels file cannot be used as a whole (missing columns, negative latency)

A down Kafka broker is ``eventbus.BrokerUnavailableError``: the CLI retries it, then gives up with a message.
A single bad row of a replay file is not an exception: it is reported with its line number and skipped.
"""


class SimulatorError(Exception):
    """Root of the simulator's exceptions; the CLI prints these as one line, without a traceback."""


class ConfigurationError(SimulatorError):
    """The requested simulation cannot be built from these settings."""


class ReplayFileError(SimulatorError):
    """A replay or labels file is refused; the message names the file and, where it applies, the line."""
