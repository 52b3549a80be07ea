"""Settings: where data and the catalog live, which S3 endpoint and profile to use.

Precedence, as in click: explicit argument (command-line flag) > environment variable >
config file > default. The config file is `config.toml` in the per-user config folder
(`$DEON_CONFIG_DIR`, else `$XDG_CONFIG_HOME/deon`, else `~/.config/deon`).
AWS credentials are left to boto3's usual chain (env, profile, SSO, instance role).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from deon.errors import ConfigError

# Every environment variable deon reads (dvc/env.py style).
ENV_CATALOG = "DEON_CATALOG"
ENV_DATA_DIR = "DEON_DATA_DIR"
ENV_CONFIG_DIR = "DEON_CONFIG_DIR"
ENV_DEBUG = "DEON_DEBUG"
ENV_JOBS = "DEON_JOBS"
ENV_ENDPOINT_URL = "AWS_ENDPOINT_URL"
ENV_PROFILE = "AWS_PROFILE"

CONFIG_FILE_NAME = "config.toml"
DEFAULT_JOBS = 16

#: the keys a config file may set at top level
SETTING_KEYS = ("endpoint_url", "profile", "catalog", "data_dir", "jobs")


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


def load_config_file(path: Path | None = None) -> dict[str, Any]:
    """Read the TOML config file; a missing file is an empty config.

    Raises:
        ConfigError: the file exists but is not valid TOML.
    """
    path = path or config_path()
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

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with every non-None override applied."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if "data_dir" in given:
            given["data_dir"] = Path(given["data_dir"]).expanduser()
        return replace(self, **given)


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
        "endpoint_url": os.environ.get(ENV_ENDPOINT_URL) or None,
        "profile": os.environ.get(ENV_PROFILE) or None,
        "catalog": os.environ.get(ENV_CATALOG) or None,
        "data_dir": os.environ.get(ENV_DATA_DIR) or None,
        "jobs": os.environ.get(ENV_JOBS) or None,
    }
    merged: dict[str, Any] = {
        "catalog": default_catalog(),
        "data_dir": default_data_dir(),
        "jobs": DEFAULT_JOBS,
    }
    for layer in ({k: file.get(k) for k in SETTING_KEYS}, env, overrides):
        merged.update({k: v for k, v in layer.items() if v is not None})
    try:
        jobs = int(merged["jobs"])
    except (TypeError, ValueError) as e:
        raise ConfigError(f"jobs must be a whole number, not {merged['jobs']!r}") from e
    if jobs < 1:
        raise ConfigError(f"jobs must be at least 1, not {jobs}")
    return Settings(
        endpoint_url=merged.get("endpoint_url"),
        profile=merged.get("profile"),
        catalog=str(merged["catalog"]),
        data_dir=Path(str(merged["data_dir"])).expanduser(),
        jobs=jobs,
    )
