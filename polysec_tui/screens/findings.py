"""How a login finding looks in the console: a short badge per kind and a style per
severity, shared by the anomalies list and the timeline."""

from __future__ import annotations

from typing import Any

from rich.text import Text

BADGES = {"brute_force": "BRUTE", "credential_stuffing": "STUFFING",
          "password_spraying": "SPRAY", "impossible_travel": "TRAVEL",
          "new_device": "NEWDEV", "new_country": "NEWCTRY", "new_asn": "NEWASN",
          "success_after_failures": "AFTERFAIL", "risky_login": "RISK",
          "ip_reputation": "BADIP", "anonymizing_network": "ANON",
          "forgotten_password": "FORGOT"}
SEVERITY_STYLES = {"critical": "bold reverse red", "high": "bold red",
                   "medium": "yellow", "low": "dim"}
SEVERITY_RANK = {"low": 0, "medium": 1, "high": 2, "critical": 3}


def badge(kind: str, severity: str) -> Text:
    """``TRAVEL:H``: the finding's kind and severity letter, coloured by severity."""
    return Text(f"{BADGES.get(kind, kind.upper())}:{severity[:1].upper()}",
                style=SEVERITY_STYLES.get(severity, ""))


def badges(found: list[dict[str, Any]]) -> Text:
    ordered = sorted(found, key=lambda a: -SEVERITY_RANK.get(str(a["severity"]), 0))
    return Text(" ").join(badge(str(a["kind"]), str(a["severity"])) for a in ordered)
