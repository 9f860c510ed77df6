"""The LoopError family.

Every error a user can cause or fix is a LoopError whose message says what failed, what was
expected, and how to fix it. The CLI prints it as one "Error: ..." line and exits 1.
"""


class LoopError(Exception):
    """Base class: the message is shown to the user as is."""


class ConfigError(LoopError):
    """A setting or a command-line option is wrong."""


class DataError(LoopError):
    """An input file or a row in it is malformed."""


class ServiceUnavailable(LoopError):
    """Label Studio, Redis or the ML backend cannot be reached."""


class LabelStudioError(LoopError):
    """Label Studio answered, but refused or failed the request."""


class RoundIncomplete(LoopError):
    """The previous round still has items that annotators owe."""


class EmptyPool(LoopError):
    """No unlabelled, unassigned items are left to select from."""


class NotInitialised(LoopError):
    """No project has been set up in this workspace yet."""
