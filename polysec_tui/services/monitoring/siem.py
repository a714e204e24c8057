"""The wire formats of the SIEM export (services/monitoring/export.py): RFC 5424 syslog
over TCP with octet-counting framing (RFC 6587 3.4.1), optionally TLS (RFC 5425), and
signed JSON webhooks. No database here: a sender takes events and says whether they
arrived.

**Syslog confirmation.** Plain syslog has no acknowledgement, and a TCP send succeeds as
soon as the kernel buffers it: messages written just before the collector dies are lost
without an error. So each batch travels on its own connection: write the messages, close
the writing side (TLS: ``close_notify``), and count the batch delivered only when the
collector closes its side in return, which it does after reading everything up to the
end. A batch cut off by a dying collector is sent again whole once it is back (the SIEM
may see a few messages twice, each with its ``sequenceId``; never a gap, never out of
order).

**Webhook signature.** ``Polysec-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." +
body)>`` with ``Polysec-Timestamp`` (Unix seconds) and ``Polysec-Event-Id``. A receiver
recomputes it over the raw body, compares in constant time, and refuses a timestamp
outside its replay window (:func:`verify_webhook`, 5 minutes by default) and an event id
it has already seen.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

FACILITIES = {
    "kern": 0, "user": 1, "daemon": 3, "auth": 4, "syslog": 5, "authpriv": 10,
    "security": 13, "local0": 16, "local1": 17, "local2": 18, "local3": 19,
    "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}
# Syslog severities of the export's events (RFC 5424 6.2.1).
SEVERITIES = {"emergency": 0, "alert": 1, "critical": 2, "error": 3, "warning": 4,
              "notice": 5, "info": 6, "debug": 7}
BOM = "\ufeff"
REPLAY_WINDOW_SECONDS = 300
USER_AGENT = "polysec-export/1"


class DeliveryFailed(Exception):
    """The batch did not certainly arrive; ``permanent``: sending it again cannot help
    (a webhook receiver refused it with a 4xx other than 408 and 429)."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent


@dataclass(frozen=True)
class Event:
    """One event as it leaves: its outbox id (the syslog ``sequenceId``, the webhook's
    event id), when it happened, its type and syslog severity, and its JSON body."""

    id: int
    at: datetime
    type: str
    severity: str
    body: str


# ------------------------------------------------------------------------- syslog


def _header_field(value: str, limit: int) -> str:
    """A header field of RFC 5424: printable US-ASCII without spaces, or "-"."""
    cleaned = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return cleaned or "-"


def syslog_message(event: Event, *, facility: int, hostname: str, app_name: str,
                   procid: str) -> bytes:
    """One RFC 5424 message: the event's type as MSGID, its outbox id as the IANA
    ``meta`` element's ``sequenceId`` (the SIEM's order and duplicate check), and the
    JSON body, UTF-8 after a BOM, as MSG."""
    pri = facility * 8 + SEVERITIES[event.severity]
    stamp = event.at.astimezone(UTC).isoformat(timespec="microseconds").replace(
        "+00:00", "Z")
    # sequenceId is 1..2147483647 (RFC 5424 7.3.1): it wraps after two billion events.
    sequence = (event.id - 1) % 2_147_483_647 + 1
    header = (f"<{pri}>1 {stamp} {_header_field(hostname, 255)} "
              f"{_header_field(app_name, 48)} {_header_field(procid, 128)} "
              f"{_header_field(event.type, 32)} [meta sequenceId=\"{sequence}\"] ")
    return header.encode("ascii") + (BOM + event.body).encode("utf-8")


def octet_frame(message: bytes) -> bytes:
    """RFC 6587 octet counting: the length in decimal, a space, the message."""
    return str(len(message)).encode("ascii") + b" " + message


@dataclass(frozen=True)
class SyslogTarget:
    host: str
    port: int
    tls: bool = False
    ca_file: str | None = None  # TLS: the collector's CA (else the system's)
    cert_file: str | None = None  # TLS: a client certificate, where the collector asks
    key_file: str | None = None
    server_name: str | None = None  # TLS: the name on the collector's certificate
    facility: int = FACILITIES["authpriv"]
    app_name: str = "polysec"
    timeout_seconds: float = 10.0


def send_syslog(target: SyslogTarget, events: Sequence[Event], *, hostname: str,
                procid: str) -> None:
    """Send ``events`` in order on one connection and wait for the collector to close
    it after reading them all (module docstring). Raises DeliveryFailed."""
    payload = b"".join(octet_frame(syslog_message(
        e, facility=target.facility, hostname=hostname, app_name=target.app_name,
        procid=procid)) for e in events)
    try:
        raw = socket.create_connection((target.host, target.port),
                                       timeout=target.timeout_seconds)
    except OSError as exc:
        raise DeliveryFailed(f"cannot connect to {target.host}:{target.port}: "
                             f"{_os_reason(exc)}") from None
    try:
        sock: socket.socket = raw
        if target.tls:
            sock = _tls_context(target).wrap_socket(
                raw, server_hostname=target.server_name or target.host)
        sock.sendall(payload)
        if isinstance(sock, ssl.SSLSocket):
            # close_notify, then wait for the collector's: everything before it was read.
            try:
                sock = sock.unwrap()
            except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
                return  # closed after reading to our close_notify
        sock.shutdown(socket.SHUT_WR)
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return
    except ssl.SSLError as exc:
        raise DeliveryFailed(f"TLS with {target.host}:{target.port}: "
                             f"{exc.reason or exc}") from None
    except OSError as exc:
        raise DeliveryFailed(f"{target.host}:{target.port}: {_os_reason(exc)}") from None
    finally:
        raw.close()


def _tls_context(target: SyslogTarget) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=target.ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if target.cert_file:
        context.load_cert_chain(target.cert_file, target.key_file)
    return context


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    return exc.strerror or exc.__class__.__name__


# ------------------------------------------------------------------------ webhooks


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    return "v1=" + hmac.new(secret, str(timestamp).encode("ascii") + b"." + body,
                            hashlib.sha256).hexdigest()


def verify_webhook(secret: bytes, headers: Mapping[str, str], body: bytes, *,
                   now: float | None = None,
                   window: int = REPLAY_WINDOW_SECONDS) -> str | None:
    """What a receiver checks: None when the signature is right and the timestamp within
    ``window`` seconds of ``now``, else why not. (Refusing an event id seen before is
    the receiver's part: it keeps them for the window.)"""
    lowered = {k.lower(): v for k, v in headers.items()}
    stamp = lowered.get("polysec-timestamp", "")
    given = lowered.get("polysec-signature", "")
    if not stamp.isdigit():
        return "no timestamp"
    if abs((time.time() if now is None else now) - int(stamp)) > window:
        return "timestamp outside the replay window"
    if not hmac.compare_digest(sign(secret, int(stamp), body), given):
        return "bad signature"
    return None


@dataclass(frozen=True)
class WebhookTarget:
    url: str
    secret: bytes
    timeout_seconds: float = 10.0
    ca_file: str | None = None


def send_webhook(target: WebhookTarget, event: Event, *, now: float | None = None) -> None:
    """POST one event, signed. A 2xx is delivered; raises DeliveryFailed otherwise
    (permanent for a 4xx other than 408 and 429: the receiver refuses this event)."""
    body = event.body.encode("utf-8")
    stamp = int(time.time() if now is None else now)
    # The scheme is http or https: the configuration refuses any other (export.py).
    request = urllib.request.Request(target.url, data=body, method="POST", headers={  # noqa: S310
        "Content-Type": "application/json", "User-Agent": USER_AGENT,
        "Polysec-Event-Id": str(event.id), "Polysec-Event-Type": event.type,
        "Polysec-Timestamp": str(stamp), "Polysec-Signature": sign(target.secret, stamp, body),
    })
    handlers: list[Any] = [_NoRedirect]
    if target.ca_file:
        handlers.append(urllib.request.HTTPSHandler(
            context=ssl.create_default_context(cafile=target.ca_file)))
    try:
        with urllib.request.build_opener(*handlers).open(
                request, timeout=target.timeout_seconds) as response:
            response.read(65_536)
    except urllib.error.HTTPError as exc:
        permanent = 400 <= exc.code < 500 and exc.code not in (408, 429)
        raise DeliveryFailed(f"HTTP {exc.code} from the receiver",
                             permanent=permanent) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        text = _os_reason(reason) if isinstance(reason, OSError) else str(reason)
        raise DeliveryFailed(f"cannot reach the receiver: {text}") from None
    except OSError as exc:
        raise DeliveryFailed(f"the receiver: {_os_reason(exc)}") from None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: the signed event goes only where it was configured to."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None



def body_of(doc: Mapping[str, Any]) -> str:
    """The JSON body of an event: sorted keys, ASCII (control and bidi characters from
    the platform arrive escaped, inert in any viewer)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      default=_json_value)


def _json_value(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
