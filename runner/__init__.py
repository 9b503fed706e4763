"""vlrun: a configuration-driven runner for Azure AI Voice Live agents."""

__version__ = "0.1.0"

import logging as _logging

# A library's loggers stay silent unless the application configures them: without this,
# Python's last-resort handler would print tool tracebacks on stderr.
_logging.getLogger("vlrun").addHandler(_logging.NullHandler())
_logging.getLogger("runner").addHandler(_logging.NullHandler())  # the emulator's module loggers
