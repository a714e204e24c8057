"""Feed records the ingest tests share beyond tests.support.helpers: a platform session,
and rows of the RBA login CSV (its header and one row, every column a keyword)."""

from __future__ import annotations

from typing import Any


def session_record(ext: str, acct: str = "A1", **extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"id": ext, "account": acct, "at": "2026-11-20T08:00:00Z",
                           "last_seen_at": "2026-11-20T09:00:00Z", "ip": "203.0.113.7"}
    rec.update(extra)
    return rec


RBA_HEADER = ("index,Login Timestamp,User ID,Round-Trip Time [ms],IP Address,Country,Region,"
              "City,ASN,User Agent String,Browser Name and Version,OS Name and Version,"
              "Device Type,Login Successful,Is Attack IP,Is Account Takeover")


def rba_row(index: str, *, stamp: str = "2020-02-03 12:43:30.772", user: str = "7",
            rtt: str = "682.0", ip: str = "10.0.65.171", country: str = "NO",
            asn: str = "29695", agent: str = "Mozilla/5.0", success: str = "True",
            attack: str = "False", takeover: str = "False") -> str:
    return ",".join([index, stamp, user, rtt, ip, country, "-", "-", asn, agent,
                     "Firefox 20.0", "iOS 13.4", "mobile", success, attack, takeover])
