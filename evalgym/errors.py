"""User-facing errors: the CLI prints these as one clear line (no traceback) and exits 2."""


class EvalgymError(Exception):
    """A mistake in the user's input or set-up: a missing data file, a bad field, an unknown env."""


class DataNotFound(EvalgymError):
    """A dataset is neither at a local path nor reachable on the hub."""
