"""Typed errors with one root. The CLI prints str(error) as one line and exits non-zero."""


class FacequeueError(Exception):
    """Base of every error facequeue reports to the user."""

    exit_code = 1


class ConfigError(FacequeueError):
    """The configuration is invalid (the message names the key)."""

    exit_code = 2


class InputError(FacequeueError):
    """A user-supplied value (name, CSV line, argument) is invalid."""

    exit_code = 2


class StoreError(FacequeueError):
    """The database cannot be opened, migrated or queried."""


class NotFoundError(FacequeueError):
    """A person or file named by the user does not exist."""


class StageError(FacequeueError):
    """A pipeline stage failed in a way worth retrying later (network down, API 5xx)."""


class PermanentStageError(FacequeueError):
    """A pipeline stage failed in a way retries cannot fix (bad key, missing weights)."""


class ModelWeightsMissing(PermanentStageError):
    """DeepFace weights for the configured model/detector are not on disk."""


class ProviderError(StageError):
    """An image search provider failed (HTTP error, malformed answer)."""


class LlmError(FacequeueError):
    """The LLM gave no usable answer after retries."""


class WikidataError(FacequeueError):
    """The Wikidata SPARQL endpoint gave no usable answer."""


class WikidataTimeout(WikidataError):
    """A query ran past the endpoint's time limit (retried once, not more)."""


class LeaseLost(FacequeueError):
    """Another daemon took over a person whose lease expired; this one stops working on it."""


class LocalIOError(StageError):
    """The machine's own disk failed a write (full, read-only, no permission): the stage is
    retried later; it is never a verdict on an image."""
