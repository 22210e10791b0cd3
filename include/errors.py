"""Exceptions shared by the domain library.

The split matters to the orchestrator: ``InputRejected`` means the user's
input can never succeed (fail the job at once, no retries); anything else is
treated as transient and retried with backoff.
"""


class TranscodeError(Exception):
    """Base class for errors raised by the domain library."""


class InputRejected(TranscodeError):
    """The source (or a request) is unusable; retrying cannot help.

    The message is shown to the user, so it says what is wrong and what to do.
    """


class UnsupportedMedia(InputRejected):
    """The upload is not a video in a supported container (a playlist, a PDF,
    an image, an empty file, an unknown format).

    A separate type so the API can answer 415 for "wrong kind of file" and
    422 for "a video, but unusable" without parsing messages.
    """


class IllegalTransition(TranscodeError):
    """A job state change that the state machine does not allow."""


class JobNotFound(TranscodeError):
    """No job with the given id."""


class StorageKeyError(TranscodeError):
    """A storage key that is malformed or tries to escape its namespace."""


class ObjectNotFound(TranscodeError):
    """No object under the given storage key."""
