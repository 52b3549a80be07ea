"""Settings: where data and the catalog live, which S3 endpoint and profile to use.

Precedence, as in click: explicit argument (command-line flag) > environment variable >
config file > default. The config file is `config.toml` in the per-user config folder
(`$DEON_CONFIG_DIR`, else `$XDG_CONFIG_HOME/deon`, else `~/.config/deon`). It is checked
when it is read: a value of the wrong type is an error naming the file and the key, an
unknown key a warning.
AWS credentials are left to boto3's usual chain (env, profile, SSO, instance role).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Union

from deon.errors import ConfigError, DeonWarning, WarningCode

# Every environment variable deon reads (dvc/env.py style).
ENV_CATALOG = "DEON_CATALOG"
ENV_DATA_DIR = "DEON_DATA_DIR"
ENV_CONFIG_DIR = "DEON_CONFIG_DIR"
ENV_DEBUG = "DEON_DEBUG"
ENV_JOBS = "DEON_JOBS"
#: key ranges a long listing is split into and listed at once (deon/s3/listing.py)
ENV_LIST_WIDTH = "DEON_LIST_WIDTH"
ENV_ENDPOINT_URL = "AWS_ENDPOINT_URL"
#: botocore's service-specific endpoint variable, which wins over AWS_ENDPOINT_URL
ENV_ENDPOINT_URL_S3 = "AWS_ENDPOINT_URL_S3"
#: botocore's switch to ignore configured endpoints (both variables and ~/.aws/config)
ENV_IGNORE_ENDPOINT_URLS = "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"
ENV_PROFILE = "AWS_PROFILE"
ENV_METADATA_READERS = "DEON_METADATA_READERS"

CONFIG_FILE_NAME = "config.toml"
DEFAULT_JOBS = 16

#: the keys a config file may set at top level
SETTING_KEYS = (
    "endpoint_url",
    "profile",
    "catalog",
    "data_dir",
    "jobs",
    "metadata_readers",
    "no_sign_request",
    "request_payer",
    "client_cert",
    "client_key",
)

#: Checks one config value: returns None when it is fine, else what was expected
#: ("a string", "true or false").
Check = Callable[[Any], str | None]
#: What a config file, or one of its tables, may hold: for each key, a check of its
#: value, or the schema of the table it must be.
Schema = Mapping[str, Union[Check, "Schema"]]


def _string(value: Any) -> str | None:
    return None if isinstance(value, str) else "a string"


def _bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else "true or false"


def _request_payer(value: Any) -> str | None:
    return None if value == "requester" else '"requester"'


def _positive_int(value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    return None if ok else "a whole number of at least 1"


def _names(value: Any) -> str | None:
    ok = isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value)
    return None if ok else "a list of metadata reader names (strings)"


#: The checks of the settings the library reads from the file.
SETTING_CHECKS: dict[str, Check] = {
    "endpoint_url": _string,
    "profile": _string,
    "catalog": _string,
    "data_dir": _string,
    "jobs": _positive_int,
    "metadata_readers": _names,
    "no_sign_request": _bool,
    "request_payer": _request_payer,
    "client_cert": _string,
    "client_key": _string,
}


def _home() -> Path:
    return Path(os.path.expanduser("~"))


def config_dir() -> Path:
    """The per-user config folder (`DEON_CONFIG_DIR` overrides it)."""
    if os.environ.get(ENV_CONFIG_DIR):
        return Path(os.environ[ENV_CONFIG_DIR]).expanduser()
    if sys.platform == "win32":  # pragma: no cover - not tested on Windows
        return Path(os.environ.get("APPDATA", _home())) / "deon"
    if sys.platform == "darwin":  # pragma: no cover
        return _home() / "Library" / "Application Support" / "deon"
    return Path(os.environ.get("XDG_CONFIG_HOME") or _home() / ".config") / "deon"


def data_home() -> Path:
    """The per-user folder for deon's own state (the default catalog lives here)."""
    if sys.platform == "win32":  # pragma: no cover
        return Path(os.environ.get("LOCALAPPDATA", _home())) / "deon"
    if sys.platform == "darwin":  # pragma: no cover
        return _home() / "Library" / "Application Support" / "deon"
    return Path(os.environ.get("XDG_DATA_HOME") or _home() / ".local" / "share") / "deon"


def default_catalog() -> str:
    """Default catalog location: `catalog.sqlite` in the per-user data folder."""
    return str(data_home() / "catalog.sqlite")


def default_data_dir() -> Path:
    """Default local root: an object `s3://b/k` lives at `~/deon-data/b/k`."""
    return _home() / "deon-data"


def config_path() -> Path:
    return config_dir() / CONFIG_FILE_NAME


@dataclass(frozen=True)
class ConfigFile:
    """A config file as read and checked: its known keys, and a warning per unknown key."""

    path: Path
    values: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _describe(value: Any) -> str:
    """A TOML value as a person wrote it, short and on one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    text = repr(value)  # repr escapes newlines and other control characters
    return text if len(text) <= 40 else text[:39] + "…"


def _check_table(
    path: Path, table: dict[str, Any], schema: Schema, prefix: str, warnings: list[str]
) -> dict[str, Any]:
    """The keys of `table` that `schema` knows, each checked; a warning for each other."""
    import difflib

    known: dict[str, Any] = {}
    for key, value in table.items():
        name = prefix + key
        rule = schema.get(key)
        if rule is None:
            close = difflib.get_close_matches(key, list(schema), n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            warnings.append(
                DeonWarning(
                    WarningCode.CONFIG_UNKNOWN_KEY,
                    f"config file {path}: unknown key {name} ignored{hint}",
                )
            )
        elif isinstance(rule, Mapping):
            if not isinstance(value, dict):
                command = name.replace(".", " ")
                raise ConfigError(
                    f"config file {path}: {name} must be a table ([{name}]) of options "
                    f"for `deon {command}`, not {_describe(value)}"
                )
            known[key] = _check_table(path, value, rule, name + ".", warnings)
        else:
            expected = rule(value)
            if expected is not None:
                raise ConfigError(
                    f"config file {path}: {name} must be {expected}, not {_describe(value)}"
                )
            known[key] = value
    return known


def _both(first: Check, second: Check) -> Check:
    return lambda value: first(value) or second(value)


def read_config_file(path: Path | None = None, schema: Schema | None = None) -> ConfigFile:
    """Read and check the TOML config file; a missing file is an empty config.

    Args:
        path: the file (default: `config.toml` in `config_dir()`).
        schema: what the file may hold besides the settings of SETTING_CHECKS (the CLI
            passes its global options and a table per command). The settings are
            checked by SETTING_CHECKS first, then by the schema too.

    Returns:
        The known keys, checked, and a warning for each key neither knows (left out
        of the values).

    Raises:
        ConfigError: the file cannot be read, is not valid TOML, or holds a value of
            the wrong type.
    """
    path = path or config_path()
    data = _parse(path)
    rules: dict[str, Any] = dict(schema or {})
    for key, check in SETTING_CHECKS.items():
        also = rules.get(key)
        # Both must accept: the library's check, then the command line's (its range).
        rules[key] = _both(check, also) if callable(also) else check
    warnings: list[str] = []
    values = _check_table(path, data, rules, "", warnings)
    return ConfigFile(path, values, warnings)


def load_config_file(path: Path | None = None) -> dict[str, Any]:
    """The settings a config file holds, checked (see `read_config_file`).

    Raises:
        ConfigError: the file cannot be read, is not valid TOML, or holds a setting of
            the wrong type.
    """
    return read_config_file(path).values


def _parse(path: Path) -> dict[str, Any]:
    """The TOML document in `path`; a missing file is an empty one."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        data: dict[str, Any] = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from e
    return data


@dataclass(frozen=True)
class Settings:
    """Resolved settings shared by every command and API call."""

    endpoint_url: str | None = None
    profile: str | None = None
    catalog: str = ""
    data_dir: Path = Path()
    jobs: int = DEFAULT_JOBS
    #: the metadata readers `up` and `show` try, in order (None: the default order,
    #: see deon.metadata.readers)
    metadata_readers: tuple[str, ...] | None = None
    #: anonymous S3 requests, no credentials looked up (aws-cli's --no-sign-request)
    no_sign_request: bool = False
    #: "requester" for Requester Pays buckets (aws-cli's --request-payer)
    request_payer: str | None = None
    #: server-side encryption of uploads (`up --sse`, `--sse-kms-key-id`)
    sse: str | None = None
    sse_kms_key_id: str | None = None
    #: a TLS client certificate (PEM, with its key unless `client_key` names the key file)
    client_cert: str | None = None
    client_key: str | None = None
    #: whether `jobs` was set (flag, DEON_JOBS or config file) rather than defaulted:
    #: then it also caps the adaptive budget of small requests (metadata HEADs)
    jobs_given: bool = False

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with every non-None override applied."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if "data_dir" in given:
            given["data_dir"] = Path(given["data_dir"]).expanduser()
        if "jobs" in given:
            given.setdefault("jobs_given", True)
        return replace(self, **given)


def env_endpoint_url() -> str | None:
    """The endpoint the environment names, in botocore's order: AWS_ENDPOINT_URL_S3,
    then AWS_ENDPOINT_URL; none when AWS_IGNORE_CONFIGURED_ENDPOINT_URLS is true.
    (Endpoints in ~/.aws/config are botocore's to find: see `s3.client.Storage`.)"""
    if os.environ.get(ENV_IGNORE_ENDPOINT_URLS, "").strip().lower() == "true":
        return None
    return os.environ.get(ENV_ENDPOINT_URL_S3) or os.environ.get(ENV_ENDPOINT_URL) or None


def load_settings(**overrides: Any) -> Settings:
    """Resolve settings: overrides > environment > config file > defaults.

    Args:
        **overrides: any of `endpoint_url`, `profile`, `catalog`, `data_dir`, `jobs`;
            None means "not given".
    """
    unknown = set(overrides) - set(SETTING_KEYS)
    if unknown:
        raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
    file = load_config_file()
    env = {
        "endpoint_url": env_endpoint_url(),
        "profile": os.environ.get(ENV_PROFILE) or None,
        "catalog": os.environ.get(ENV_CATALOG) or None,
        "data_dir": os.environ.get(ENV_DATA_DIR) or None,
        "jobs": os.environ.get(ENV_JOBS) or None,
        "metadata_readers": [
            n.strip() for n in os.environ.get(ENV_METADATA_READERS, "").split(",") if n.strip()
        ]
        or None,
    }
    merged: dict[str, Any] = {
        "catalog": default_catalog(),
        "data_dir": default_data_dir(),
        "jobs": DEFAULT_JOBS,
    }
    jobs_given = False
    for layer in ({k: file.get(k) for k in SETTING_KEYS}, env, overrides):
        merged.update({k: v for k, v in layer.items() if v is not None})
        jobs_given = jobs_given or layer.get("jobs") is not None
    try:
        jobs = int(merged["jobs"])
    except (TypeError, ValueError) as e:
        raise ConfigError(f"jobs must be a whole number, not {merged['jobs']!r}") from e
    if jobs < 1:
        raise ConfigError(f"jobs must be at least 1, not {jobs}")
    return Settings(
        no_sign_request=bool(merged.get("no_sign_request", False)),
        request_payer=merged.get("request_payer"),
        client_cert=merged.get("client_cert"),
        client_key=merged.get("client_key"),
        endpoint_url=merged.get("endpoint_url"),
        profile=merged.get("profile"),
        catalog=str(merged["catalog"]),
        data_dir=Path(str(merged["data_dir"])).expanduser(),
        jobs=jobs,
        metadata_readers=(
            tuple(merged["metadata_readers"]) if merged.get("metadata_readers") else None
        ),
        jobs_given=jobs_given,
    )
