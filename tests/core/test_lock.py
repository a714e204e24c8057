"""The lock files agree with pyproject.toml: every dependency and test extra is pinned
within its range, with hashes, and the runtime lock takes the test lock's versions. A
pyproject edit without `./scripts/lock` fails here, not on someone else's machine."""

from __future__ import annotations

import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.support import ROOT


def _locked(name: str) -> dict[str, tuple[Version, int]]:
    """Package -> (pinned version, number of hashes) of one pip-compile output file."""
    text = (ROOT / name).read_text(encoding="utf-8")
    assert "./scripts/lock" in text, f"{name} was not written by ./scripts/lock"
    pins: dict[str, tuple[Version, int]] = {}
    for entry in text.replace("\\\n", " ").splitlines():
        if not entry.strip() or entry.lstrip().startswith("#"):
            continue
        spec, *options = entry.split()
        assert "==" in spec and not spec.startswith("-"), f"{name}: not a pin: {entry!r}"
        package, version = spec.split("==")
        hashes = [o for o in options if o.startswith("--hash=sha256:")]
        assert not [o for o in options if o.startswith("-") and o not in hashes], (
            f"{name}: unexpected options: {entry!r}")
        pins[canonicalize_name(package)] = (Version(version), len(hashes))
    return pins


def _required(extra: str | None) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    listed = project["dependencies"] if extra is None else (
        project["optional-dependencies"][extra])
    return [Requirement(r) for r in listed]


@pytest.mark.parametrize(("lock", "extras"), [("requirements.txt", [None]),
                                              ("requirements-test.txt", [None, "test"])])
def test_lock_pins_every_requirement_within_its_range_with_hashes(lock, extras):
    pins = _locked(lock)
    assert all(count > 0 for _, count in pins.values())
    for extra in extras:
        for req in _required(extra):
            if req.marker is not None and not req.marker.evaluate():
                continue
            name = canonicalize_name(req.name)
            assert name in pins, f"{req} is not in {lock}: run ./scripts/lock"
            version = pins[name][0]
            assert req.specifier.contains(version, prereleases=True), (
                f"{lock} pins {name}=={version} outside {req}: run ./scripts/lock")


def test_every_requirement_has_an_upper_bound():
    """`pip install polysec` must not pull in an untested major version (Textual's most
    of all)."""
    for extra in (None, "test"):
        for req in _required(extra):
            assert any(s.operator in ("<", "<=", "==", "~=") for s in req.specifier), (
                f"{req} has no upper bound")


def test_the_runtime_lock_takes_the_test_locks_versions():
    runtime, test = _locked("requirements.txt"), _locked("requirements-test.txt")
    assert {n: v for n, (v, _) in runtime.items()} == {
        n: test[n][0] for n in runtime}, "run ./scripts/lock"
