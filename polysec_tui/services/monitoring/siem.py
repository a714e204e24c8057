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

import contextlib
import hashlib
import hmac
import json
import re
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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
    protocol: str = "tcp"  # tcp (octet counting, RFC 6587) | relp (acknowledged)
    tls: bool = False
    ca_file: str | None = None  # TLS: the collector's CA (else the system's)
    cert_file: str | None = None  # TLS: a client certificate, where the collector asks
    key_file: str | None = None
    server_name: str | None = None  # TLS: the name on the collector's certificate
    facility: int = FACILITIES["authpriv"]
    app_name: str = "polysec"
    timeout_seconds: float = 10.0


RELP_WINDOW = 100  # messages sent before their acknowledgements are read


def send_syslog(target: SyslogTarget, events: Sequence[Event], *, hostname: str,
                procid: str) -> None:
    """Send ``events`` in order on one connection and make sure they arrived: RELP
    acknowledges each message; plain TCP only tells that the collector read them all
    (module docstring). The whole exchange is bounded by four times the timeout.
    Raises DeliveryFailed."""
    messages = [syslog_message(e, facility=target.facility, hostname=hostname,
                               app_name=target.app_name, procid=procid) for e in events]
    deadline = time.monotonic() + 4 * target.timeout_seconds
    where = f"{target.host}:{target.port}"
    try:
        raw = socket.create_connection((target.host, target.port),
                                       timeout=target.timeout_seconds)
    except OSError as exc:
        raise DeliveryFailed(f"cannot connect to {where}: {_os_reason(exc)}") from None
    try:
        sock: socket.socket = raw
        if target.tls:
            sock = tls_context(target).wrap_socket(
                raw, server_hostname=target.server_name or target.host)
        if target.protocol == "relp":
            _relp(sock, messages, deadline)
        else:
            _octet_counted(sock, messages, deadline)
    except ssl.SSLError as exc:
        raise DeliveryFailed(f"TLS with {where}: {exc.reason or exc.__class__.__name__}"
                             ) from None
    except OSError as exc:
        raise DeliveryFailed(f"{where}: {_os_reason(exc)}") from None
    except DeliveryFailed as exc:
        raise DeliveryFailed(f"{where}: {exc}") from None
    finally:
        raw.close()


def _octet_counted(sock: socket.socket, messages: list[bytes], deadline: float) -> None:
    """Write, close the writing side, and wait for the collector's close: it read
    everything. A peer that answers anything is not a syslog collector; a TLS stream
    closed without ``close_notify`` may have been cut off."""
    sock.sendall(b"".join(octet_frame(m) for m in messages))
    if isinstance(sock, ssl.SSLSocket):
        try:
            sock = sock.unwrap()  # our close_notify, then the collector's
        except ssl.SSLEOFError:
            raise DeliveryFailed("the TLS stream ended without close_notify") from None
        except ssl.SSLZeroReturnError:
            return
    sock.shutdown(socket.SHUT_WR)
    while time.monotonic() < deadline:
        chunk = sock.recv(4096)
        if not chunk:
            return
        raise DeliveryFailed("the peer answered: not a syslog collector")
    raise DeliveryFailed("timed out")


def _relp(sock: socket.socket, messages: list[bytes], deadline: float) -> None:
    """RELP (rsyslog's Reliable Event Logging Protocol): open a session, send each
    message as a numbered ``syslog`` command, and count it delivered only on its
    ``200 OK``; then close the session."""
    reader = _RelpReader(sock, deadline)
    sock.sendall(_relp_frame(1, "open", b"relp_version=0\nrelp_software=polysec\n"
                                         b"commands=syslog"))
    txnr, command, data = reader.frame()
    if (txnr, command) != (1, "rsp") or not data.startswith(b"200"):
        raise DeliveryFailed("the collector refused the RELP session")
    number = 1
    for start in range(0, len(messages), RELP_WINDOW):
        window = messages[start:start + RELP_WINDOW]
        first = number + 1
        sock.sendall(b"".join(_relp_frame(first + i, "syslog", m)
                              for i, m in enumerate(window)))
        number += len(window)
        waiting = set(range(first, number + 1))
        while waiting:
            txnr, command, data = reader.frame()
            if command == "serverclose":
                raise DeliveryFailed("the collector closed the RELP session")
            if command != "rsp" or txnr not in waiting:
                raise DeliveryFailed("the collector answered out of turn")
            if not data.startswith(b"200"):
                raise DeliveryFailed(f"the collector refused message {txnr}: "
                                     f"{data[:60].decode('ascii', 'replace')}")
            waiting.discard(txnr)
    number += 1
    sock.sendall(_relp_frame(number, "close", b""))
    with contextlib.suppress(DeliveryFailed, OSError):
        reader.frame()  # its answer; the messages are acknowledged already


def _relp_frame(txnr: int, command: str, data: bytes) -> bytes:
    head = f"{txnr} {command} {len(data)}".encode("ascii")
    return head + (b" " + data if data else b"") + b"\n"


class _RelpReader:
    """RELP frames from the collector: ``TXNR SP COMMAND SP DATALEN [SP DATA] LF``."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock, self.deadline, self.buffer = sock, deadline, b""

    def _fill(self) -> None:
        if time.monotonic() > self.deadline:
            raise DeliveryFailed("timed out waiting for acknowledgements")
        chunk = self.sock.recv(65_536)
        if not chunk:
            raise DeliveryFailed("the collector closed the connection before "
                                 "acknowledging")
        self.buffer += chunk
        if len(self.buffer) > 1_000_000:
            raise DeliveryFailed("the collector's answer is too long")

    def frame(self) -> tuple[int, str, bytes]:
        while (match := _RELP_HEAD.match(self.buffer)) is None:
            if len(self.buffer) > 64:
                raise DeliveryFailed("the collector does not speak RELP")
            self._fill()
        txnr, command, size = int(match[1]), match[2].decode("ascii"), int(match[3])
        if size == 0:
            if match[4] != b"\n":
                raise DeliveryFailed("a RELP frame without its trailer")
            self.buffer = self.buffer[match.end():]
            return txnr, command, b""
        start = match.end()
        while len(self.buffer) < start + size + 1:
            self._fill()
        if match[4] != b" " or self.buffer[start + size:start + size + 1] != b"\n":
            raise DeliveryFailed("a RELP frame without its trailer")
        data = self.buffer[start:start + size]
        self.buffer = self.buffer[start + size + 1:]
        return txnr, command, data


_RELP_HEAD = re.compile(rb"(\d{1,9}) ([a-z]{1,32}) (\d{1,9})([ \n])")


def tls_context(target: SyslogTarget) -> ssl.SSLContext:
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


def sign(secret: bytes, timestamp: int, event_id: int, body: bytes) -> str:
    """``v1=`` + hex HMAC-SHA256 over ``timestamp.event_id.body``: the id is signed, so
    a replay inside the window cannot pass as a new event (the type is in the body)."""
    message = f"{timestamp}.{event_id}.".encode("ascii") + body
    return "v1=" + hmac.new(secret, message, hashlib.sha256).hexdigest()


def verify_webhook(secret: bytes, headers: Mapping[str, str], body: bytes, *,
                   now: float | None = None,
                   window: int = REPLAY_WINDOW_SECONDS) -> str | None:
    """What a receiver checks: None when the signature is right and the timestamp within
    ``window`` seconds of ``now``, else why not. (Refusing an event id seen before is
    the receiver's part: it keeps them for the window.)"""
    lowered = {k.lower(): v for k, v in headers.items()}
    stamp = lowered.get("polysec-timestamp", "")
    event = lowered.get("polysec-event-id", "")
    given = lowered.get("polysec-signature", "")
    if not (_DIGITS.fullmatch(stamp) and _DIGITS.fullmatch(event)):
        return "no timestamp or event id"
    if abs((time.time() if now is None else now) - int(stamp)) > window:
        return "timestamp outside the replay window"
    if not hmac.compare_digest(sign(secret, int(stamp), int(event), body), given):
        return "bad signature"
    return None


_DIGITS = re.compile(r"[0-9]{1,18}")
# Refusals about the event itself: sending it again cannot help. Any other answer (401
# or 403 of a receiver whose clock or key is off, 404 while it is redeployed, 5xx) is
# retried with backoff, then set aside as a dead letter.
PERMANENT_STATUSES = frozenset({400, 413, 415, 422})


@dataclass(frozen=True)
class WebhookTarget:
    url: str
    secret: bytes = field(repr=False)
    timeout_seconds: float = 10.0
    ca_file: str | None = None


def webhook_opener(target: WebhookTarget) -> urllib.request.OpenerDirector:
    """No redirects, no proxy from the environment (the signed event goes only where it
    was configured to), the configured CA where there is one."""
    handlers: list[Any] = [_NoRedirect, urllib.request.ProxyHandler({})]
    if target.ca_file:
        handlers.append(urllib.request.HTTPSHandler(
            context=ssl.create_default_context(cafile=target.ca_file)))
    return urllib.request.build_opener(*handlers)


def send_webhook(target: WebhookTarget, event: Event, *, now: float | None = None) -> None:
    """POST one event, signed. A 2xx is delivered; raises DeliveryFailed otherwise
    (permanent for PERMANENT_STATUSES). Error texts never quote the URL (its query may
    hold a token)."""
    body = event.body.encode("utf-8")
    stamp = int(time.time() if now is None else now)
    try:
        # The scheme is http or https: the configuration refuses any other (export.py).
        request = urllib.request.Request(target.url, data=body, method="POST", headers={  # noqa: S310
            "Content-Type": "application/json", "User-Agent": USER_AGENT,
            "Polysec-Event-Id": str(event.id), "Polysec-Event-Type": event.type,
            "Polysec-Timestamp": str(stamp),
            "Polysec-Signature": sign(target.secret, stamp, event.id, body),
        })
        with webhook_opener(target).open(request, timeout=target.timeout_seconds) as response:
            response.read(65_536)
    except urllib.error.HTTPError as exc:
        raise DeliveryFailed(f"HTTP {exc.code} from the receiver",
                             permanent=exc.code in PERMANENT_STATUSES) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        text = _os_reason(reason) if isinstance(reason, OSError) else "an unusable address"
        raise DeliveryFailed(f"cannot reach the receiver: {text}") from None
    except OSError as exc:
        raise DeliveryFailed(f"the receiver: {_os_reason(exc)}") from None
    except Exception as exc:  # a malformed answer (http.client), an unusable URL
        raise DeliveryFailed(f"the receiver: {exc.__class__.__name__}") from None


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
