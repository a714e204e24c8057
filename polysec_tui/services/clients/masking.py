"""Masking of client PII for every screen and every --json output. Revealing a field in
full is a separate, audited action (`services.accounts.reveal`)."""

from __future__ import annotations


def _stars(part: str, keep: int = 1) -> str:
    return part[:keep] + "***" if part else "***"


def mask_email(value: str) -> str:
    """jane.doe@gmail.com -> j***@g***.com"""
    local, _, domain = value.rpartition("@")
    if not local:
        return "***"
    host, dot, tld = domain.rpartition(".")
    if not dot:
        return f"{_stars(local)}@***"
    return f"{_stars(local)}@{_stars(host)}.{tld}"


def mask_phone(value: str) -> str:
    """+49 170 1234512 -> +49 *** *** 12 (country code and the last two digits)."""
    digits = [c for c in value if c.isdigit()]
    if len(digits) < 6:
        return "***"
    prefix = ""
    stripped = value.strip()
    if stripped.startswith("+"):
        prefix = "+" + stripped[1:].split(" ", 1)[0][:3] + " "
    return f"{prefix}*** *** {''.join(digits[-2:])}"


def mask_name(value: str) -> str:
    """Jane Doe -> J*** D***"""
    parts = value.split()
    return " ".join(_stars(p) for p in parts) if parts else "***"


def mask_date(value: str) -> str:
    """1985-04-12 -> 1985-**-** (the year alone says little; the day says a lot)."""
    return value[:4] + "-**-**" if len(value) >= 4 else "***"


def mask_address(value: str) -> str:
    """Keep the last comma-separated part (usually the city), hide the rest."""
    parts = [p.strip() for p in value.split(",") if p.strip()]
    return "***, " + parts[-1] if len(parts) > 1 else "***"


MASKS = {
    "email": mask_email,
    "phone": mask_phone,
    "full_name": mask_name,
    "date_of_birth": mask_date,
    "address": mask_address,
}


def mask(field: str, value: str | None) -> str | None:
    return None if value is None else MASKS[field](value)
