"""Error types a user can act on.

Anything the user caused (a bad file, a wrong argument, a source that cannot be
opened) raises a subclass of :class:`GuidanceError` whose message names the file
or setting and what is wrong. The command line prints that one line and exits
with status 2; the UI shows it in a dialog. Anything else is a bug.
"""


class GuidanceError(Exception):
    """Base class of errors whose message is meant for the user."""


class InputError(GuidanceError):
    """A file, device or stream cannot be used: says which and why."""


class FrameFormatError(InputError):
    """A frame of the wrong shape or type reached the pipeline."""


class ModelError(GuidanceError):
    """A model file is missing, corrupt or does not have the expected shape."""


class SourceDisconnected(GuidanceError):
    """A live source stopped delivering frames (cable pulled, server gone)."""
