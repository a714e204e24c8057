"""Remapping the console's keys: ``[keys]`` in the TOML configuration, for terminals that
swallow some keys (a bastion's multiplexer taking ``ctrl+b``, a terminal without F1).

Every binding of the console has an id (``queue.reject-marked``, ``app.show.withdrawals``);
``[keys]`` maps an id to the keys that should trigger it instead, comma-separated as
Textual writes them::

    [keys]
    "app.keys" = "f2,question_mark"
    "queue.reject-marked" = "ctrl+x"

Textual's keymap applies it to every screen (`App.set_keymap`). `polysec keys-help`
lists every binding with its effective keys; an id the console does not have is refused
there (exit 2) and announced in the console once its screens are loaded.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import asdict, dataclass
from typing import Any

from textual.binding import Binding
from textual.dom import DOMNode

from polysec_tui.config import Settings
from polysec_tui.errors import InputError

MAX_KEYS_LENGTH = 100


@dataclass(frozen=True)
class BindingInfo:
    id: str
    keys: str  # what triggers it now (the keymap applied)
    default: str  # what triggers it without a keymap
    description: str
    tooltip: str
    where: str  # the screens or widgets that have it ("app": everywhere)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def keymap_from_settings(settings: Settings) -> dict[str, str]:
    """The ``[keys]`` table: binding id -> keys; refused (one line) when malformed."""
    section = settings.section("keys")
    keymap: dict[str, str] = {}
    for binding_id, keys in section.items():
        if (not isinstance(keys, str) or not keys.strip() or len(keys) > MAX_KEYS_LENGTH
                or any(not k.strip() for k in keys.split(","))):
            raise InputError(f"config: [keys] {binding_id} must be keys such as "
                             "\"ctrl+x\" or \"f2,question_mark\"")
        keymap[binding_id] = ",".join(k.strip() for k in keys.split(","))
    return keymap


def binding_catalogue(app_class: type[DOMNode], keymap: dict[str, str]) -> list[BindingInfo]:
    """Every binding with an id of ``app_class`` and of the console's screens and widgets
    (their modules imported now), sorted by id."""
    import polysec_tui.screens as package

    owners: list[type[DOMNode]] = [app_class]
    for module_info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{module_info.name}")
        owners += [value for value in vars(module).values()
                   if isinstance(value, type) and issubclass(value, DOMNode)
                   and value.__module__ == module.__name__ and "BINDINGS" in vars(value)]
    found: dict[str, tuple[Binding, list[str]]] = {}
    for owner in owners:
        for binding in vars(owner)["BINDINGS"]:
            if not isinstance(binding, Binding) or binding.id is None:
                continue
            where = "app" if owner is app_class else owner.__name__
            if binding.id in found:
                found[binding.id][1].append(where)
            else:
                found[binding.id] = (binding, [where])
    return [BindingInfo(binding_id, keymap.get(binding_id, binding.key), binding.key,
                        binding.description, binding.tooltip or "", ", ".join(where))
            for binding_id, (binding, where) in sorted(found.items())]


def unknown_ids(keymap: dict[str, str], catalogue: list[BindingInfo]) -> list[str]:
    known = {info.id for info in catalogue}
    return sorted(set(keymap) - known)
