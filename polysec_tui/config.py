"""Where polysec finds its database, keyring and TOML configuration.

Precedence: command-line option, then environment variable, then the TOML file, then the
defaults under click's application directory. Only the standard library and click are
imported here: `polysec --help` must stay fast.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from polysec_tui.errors import InputError

APP_NAME = "polysec"
DB_ENV = "POLYSEC_DB_URL"
KEYRING_ENV = "POLYSEC_KEYRING"
CONFIG_ENV = "POLYSEC_CONFIG"


def app_dir() -> Path:
    """The per-user directory holding the embedded database, keyring and config."""
    return Path(click.get_app_dir(APP_NAME))


def default_db_url(*, demo: bool = False) -> str:
    name = "demo.db" if demo else "polysec.db"
    return f"sqlite:///{app_dir() / name}"


def default_keyring_path(*, demo: bool = False) -> Path:
    return app_dir() / ("demo-keyring.json" if demo else "keyring.json")


@dataclass(frozen=True)
class Settings:
    db_url: str
    keyring_path: Path
    config_path: Path | None = None
    demo: bool = False
    # The parsed TOML document; later sections (screening, sessions...) read from it.
    options: dict[str, Any] = field(default_factory=dict)

    def section(self, name: str) -> dict[str, Any]:
        value = self.options.get(name, {})
        if not isinstance(value, dict):
            raise InputError(f"config: [{name}] must be a table")
        return value

    def for_demo(self) -> Settings:
        """The same settings pointed at the embedded demo database, unless told otherwise;
        without a [backup] table, the demo's own backup keys (`demo_backup`)."""
        db_url = self.db_url if self._explicit_db else default_db_url(demo=True)
        keyring = self.keyring_path if self._explicit_keyring else default_keyring_path(demo=True)
        options = self.options
        if "backup" not in options:
            backup = demo_backup(keyring)
            if backup:
                options = {**options, "backup": backup}
        return Settings(db_url, keyring, self.config_path, True, options)

    @property
    def _explicit_db(self) -> bool:
        return self.db_url != default_db_url()

    @property
    def _explicit_keyring(self) -> bool:
        return self.keyring_path != default_keyring_path()


DEMO_IDENTITY = "demo-backup-identity.key"
DEMO_SIGNING_KEY = "demo-backup-signing.key"
DEMO_BACKUP_DIR = "demo-backups"


def demo_backup(keyring: Path) -> dict[str, Any]:
    """The demo's [backup] table: its keys beside the demo keyring (`polysec demo` makes
    them), so that the demo can create, verify and restore backups. Empty until they
    exist. The public halves are read from the keys' comment lines: no cryptography
    is imported here."""
    identity, signing = keyring.with_name(DEMO_IDENTITY), keyring.with_name(DEMO_SIGNING_KEY)
    recipient, signer = _comment(identity, "recipient"), _comment(signing, "signer")
    if not recipient or not signer:
        return {}
    return {"dir": str(keyring.with_name(DEMO_BACKUP_DIR)), "recipients": [recipient],
            "identity": str(identity), "signing_key": str(signing), "signers": [signer]}


def _comment(path: Path, name: str) -> str | None:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    prefix = f"# {name}: "
    return next((line[len(prefix):].strip() for line in lines if line.startswith(prefix)),
                None)


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise InputError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise InputError(f"cannot read config file {path}: {exc.strerror}") from None


def resolve_settings(
    db_url: str | None, keyring: str | None, config: str | None
) -> Settings:
    """Combine options (already merged with their environment variables) and the TOML file."""
    config_path: Path | None
    if config:
        config_path = Path(config).expanduser()
        options = load_toml(config_path)
    else:
        config_path = app_dir() / "config.toml"
        options = load_toml(config_path) if config_path.is_file() else {}
        if not options:
            config_path = None
    database = options.get("database", {})
    keyring_section = options.get("keyring", {})
    url = db_url or database.get("url") or default_db_url()
    keyring_path = Path(
        keyring or keyring_section.get("path") or default_keyring_path()
    ).expanduser()
    if not isinstance(url, str):
        raise InputError("config: [database] url must be a string")
    return Settings(url, keyring_path, config_path, False, options)


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}
