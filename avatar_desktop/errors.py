"""Errors the user can act on. Their message says what is wrong and what to do; the CLI prints it as one line."""


class AvatarError(Exception):
    """Base class: bad input (file, device, checkpoint, setting) that the user can fix."""


class InputFileError(AvatarError):
    """A portrait, audio or video file that cannot be used."""


class CheckpointError(AvatarError):
    """A model folder that is missing, foreign, unsafe (pickle) or does not match its config."""


class OutputError(AvatarError):
    """An output file or folder that cannot be written (unwritable folder, an existing file without --force)."""
