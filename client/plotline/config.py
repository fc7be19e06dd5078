"""The client's configuration directory, `~/.plotline/` (or `$PLOTLINE_HOME`).

Three INI files, split as the 0.4 design notes split `~/.bokeh/`:

- `config`      general settings, e.g. `[server] url`. Never holds a secret, so a user can
                post it publicly when asking for help.
- `servers.cfg` credentials, one section per server URL: `username`, `api_key`, `token`.
- `cloud.cfg`   credentials for the organisation's default ("cloud") server, a `[cloud]`
                section that also names its `url`. Kept apart so it can be replaced or
                updated without touching a user's own servers.cfg, and vice versa.

The credential files are written with mode 0o600 (the directory, when we create it, 0o700).
"""

from __future__ import annotations

import configparser
import os
import tempfile
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:5006"
CREDENTIAL_FIELDS = ("username", "api_key", "token")
CLOUD = "cloud"


def home() -> Path:
    """The configuration directory: $PLOTLINE_HOME, else ~/.plotline."""
    return Path(os.environ.get("PLOTLINE_HOME") or "~/.plotline").expanduser()


def config_path() -> Path:
    return home() / "config"


def servers_path() -> Path:
    return home() / "servers.cfg"


def cloud_path() -> Path:
    return home() / "cloud.cfg"


def normalize_url(url: str) -> str:
    """One spelling per server, so credentials are found again: no trailing slash."""
    return url.strip().rstrip("/")


def _read(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)  # secrets may contain '%'
    parser.read(path, encoding="utf-8")
    return parser


def _write(path: Path, parser: configparser.ConfigParser, mode: int) -> None:
    """Replace `path` atomically with a file created with `mode` (never briefly wider)."""
    directory = path.parent
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True)
        directory.chmod(0o700)  # mkdir's mode is filtered by the umask
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.")  # mkstemp: 0o600
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            parser.write(out)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- general settings (`config`) ---------------------------------------------------------

def default_url() -> str:
    """The server the client verbs talk to when no --url is given: $PLOTLINE_URL (what an
    applet gets from the server that runs it), else the config file's, else localhost."""
    if os.environ.get("PLOTLINE_URL"):
        return normalize_url(os.environ["PLOTLINE_URL"])
    return normalize_url(_read(config_path()).get("server", "url", fallback=DEFAULT_URL))


def set_default_url(url: str) -> None:
    parser = _read(config_path())
    if not parser.has_section("server"):
        parser.add_section("server")
    parser.set("server", "url", normalize_url(url))
    _write(config_path(), parser, 0o644)


# --- credentials (`cloud.cfg`, `servers.cfg`) --------------------------------------------

def _location(url: str) -> tuple[Path, configparser.ConfigParser, str]:
    """Which file and section hold the credentials for `url`."""
    url = normalize_url(url)
    cloud = _read(cloud_path())
    if cloud.has_section(CLOUD) and normalize_url(cloud.get(CLOUD, "url", fallback="")) == url:
        return cloud_path(), cloud, CLOUD
    return servers_path(), _read(servers_path()), url


def credentials_file(url: str) -> Path:
    """The file where the credentials for `url` are (or would be) kept."""
    return _location(url)[0]


def load_credentials(url: str) -> dict[str, str]:
    """The saved username / api_key / token for `url` (only the fields that are set)."""
    _, parser, section = _location(url)
    if not parser.has_section(section):
        return {}
    return {k: v for k in CREDENTIAL_FIELDS if (v := parser.get(section, k, fallback=""))}


def save_credentials(url: str, **fields: str | None) -> Path:
    """Set credential fields for `url` (a None value removes that field); returns the file."""
    unknown = set(fields) - set(CREDENTIAL_FIELDS)
    if unknown:
        raise ValueError(f"not credential fields: {sorted(unknown)}")
    path, parser, section = _location(url)
    if not parser.has_section(section):
        parser.add_section(section)
    for key, value in fields.items():
        if value is None:
            parser.remove_option(section, key)
        else:
            parser.set(section, key, value)
    _write(path, parser, 0o600)
    return path


def forget_credentials(url: str) -> bool:
    """Drop every saved credential for `url` (a cloud.cfg keeps its url); True if any."""
    if not load_credentials(url):
        return False
    path, parser, section = _location(url)
    if section == CLOUD:
        for key in CREDENTIAL_FIELDS:
            parser.remove_option(section, key)
    else:
        parser.remove_section(section)
    _write(path, parser, 0o600)
    return True
