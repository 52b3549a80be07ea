"""Exceptions raised by the deon library, and the exit status each maps to.

Every message tells the user what happened and, where there is one, what to do next.
The CLI turns these into one line on stderr; library users catch `DeonError`.
"""

from __future__ import annotations

from enum import Enum, IntEnum


class ExitStatus(IntEnum):
    """Exit statuses of the `deon` command (listed in the README)."""

    OK = 0
    #: an error, or some items failed (each named on stderr)
    ERROR = 1
    #: bad usage or input: a malformed address, a missing folder, an unknown bucket
    USAGE = 2
    INTERRUPTED = 130
    #: stopped by SIGTERM (128 + 15)
    TERMINATED = 143


class DeonError(Exception):
    """Base class of every error deon raises on purpose."""

    exit_status: ExitStatus = ExitStatus.ERROR
    #: the error would recur for every item of the run (expired credentials, this
    #: machine's clock, a refused certificate): commands stop at the first and say it once
    fatal: bool = False


class UsageError(DeonError):
    """The user asked for something that cannot be done as asked (exit 2)."""

    exit_status = ExitStatus.USAGE


class AddressError(UsageError):
    """A malformed `s3://BUCKET/PREFIX` address or object URI."""


class LocalPathError(UsageError):
    """A local folder or file given by the user is missing or unusable."""


class NotHDF5Error(UsageError):
    """A file that should be HDF5 is not."""


class ConfigError(UsageError):
    """Bad configuration: unknown profile, unreadable config file, no credentials."""


class BucketNotFound(UsageError):
    """The bucket named in an address does not exist."""


class LocalFileError(DeonError):
    """The local file system refused a write: read-only, gone, a name it cannot hold."""


class DiskFull(LocalFileError):
    """No space left on the local file system (ENOSPC, or a quota): the run stops
    early, since every further item would fail the same way."""


class KeyNotFound(DeonError):
    """An object named by a URI does not exist."""


class AccessDenied(DeonError):
    """The credentials in use may not do this."""


class StorageError(DeonError):
    """S3 or the network failed in a way retries did not cure."""


class PreconditionFailed(StorageError):
    """A conditional write lost: the object changed since we compared it."""


class IntegrityError(DeonError):
    """Downloaded bytes do not match the size or checksum the object claims."""


class UnsafeKey(DeonError):
    """An object key that cannot be written safely under the local folder."""


class FrameError(DeonError):
    """Image frames in a file that cannot be decoded (an mp4 or JPEG stream)."""


class MetadataError(DeonError):
    """Object metadata that cannot be decoded."""


class CatalogError(DeonError):
    """The catalog cannot be opened, upgraded or queried."""


class QueryError(UsageError):
    """A query the catalog cannot run: unknown column, syntax error (exit 2)."""


class WarningCode(str, Enum):
    """What a warning is about, so that callers recognise it without reading its text."""

    #: files that are not HDF5 went up without metadata (one summary per `up`)
    NOT_HDF5_SUMMARY = "not-hdf5-summary"
    #: past the cap on metadata columns: a key is kept only in the metadata column
    COLUMN_CAP = "column-cap"
    #: a metadata key of higher rank took a column's name; the other key moved
    COLUMN_RENAMED = "column-renamed"
    #: a metadata key is stored under a suffixed column name (its plain name is taken)
    COLUMN_SUFFIXED = "column-suffixed"
    #: the config file holds a key deon does not know (ignored)
    CONFIG_UNKNOWN_KEY = "config-unknown-key"
    #: an object's sha256 header is malformed (ignored)
    MALFORMED_SHA256 = "malformed-sha256"
    #: a published snapshot was not used, or was found to disagree with the objects
    SNAPSHOT_UNUSED = "snapshot-unused"
    #: a source is now mirrored from another endpoint than before
    ENDPOINT_MOVED = "endpoint-moved"
    #: the run stopped early (a full disk): the items not tried are counted
    STOPPED_EARLY = "stopped-early"
    #: deon's state file (hash cache, upload ledger) could not be written
    STATE_UNWRITABLE = "state-unwritable"
    #: a local file was deleted while it went up (the object holds it as it was)
    DELETED_DURING_UP = "deleted-during-up"
    #: a manifest is pulled from another endpoint than the one it was frozen from
    MANIFEST_ENDPOINT = "manifest-endpoint"
    #: an HDF5 file went up without metadata: no metadata reader recognised it, or the
    #: one that did failed (the text names the reader and why)
    NO_METADATA = "no-metadata"
    #: `up` did not follow a symlink to a folder that contains it
    SYMLINK_LOOP = "symlink-loop"
    #: any other warning (its text says what)
    OTHER = "other"


class DeonWarning(str):
    """A warning: its text (it *is* the string, so it prints and compares as one) and a
    `code` naming its kind."""

    code: WarningCode

    def __new__(cls, code: WarningCode, message: str) -> DeonWarning:
        self = super().__new__(cls, message)
        self.code = code
        return self
