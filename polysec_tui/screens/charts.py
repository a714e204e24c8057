"""Character charts for the timeline screen: logins per day and a map of login places.

Both are pure functions that return ``rich.text.Text`` for a given size, so they are
tested without a terminal and redrawn by their widgets on resize. Nothing here carries
meaning through colour alone (NO_COLOR): failures and successes have different glyphs,
an impossible trip is drawn with ``!`` marks as well as in red.

The map is equirectangular (longitude and latitude straight onto x and y), zoomed to the
logins' bounding box with a margin (at least 40° by 20°), drawn with braille dots (2 x 4
per character), so a trip of a few hundred kilometres is still a visible line. Land is
a coarse 5° mask (:data:`LAND`, hand-drawn from an atlas): enough to tell Europe from
America, not a basemap.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from datetime import date

from rich.text import Text

from polysec_tui.services.logins.timeline import DayCount, LocatedLogin

OK_GLYPH = "█"
FAIL_GLYPH = "▒"
OK_STYLE = "green"
FAIL_STYLE = "bold red"

# Land per 5° band of latitude (top of the band -> longitude intervals in degrees).
LAND: dict[int, tuple[tuple[int, int], ...]] = {
    85: ((-90, -20), (10, 30), (45, 65), (90, 105)),
    80: ((-120, -15), (10, 30), (55, 68), (95, 110)),
    75: ((-157, -141), (-125, -20), (20, 30), (55, 180)),
    70: ((-165, -60), (-55, -20), (-24, -13), (12, 180)),
    65: ((-165, -95), (-78, -65), (-50, -40), (5, 180)),
    60: ((-160, -95), (-78, -60), (-7, -2), (5, 165)),
    55: ((-130, -57), (-10, 2), (5, 142), (155, 162)),
    50: ((-125, -53), (-5, 145)),
    45: ((-125, -65), (-9, 3), (5, 132), (140, 146)),
    40: ((-123, -75), (-9, 0), (12, 18), (20, 128), (133, 141)),
    35: ((-120, -77), (-10, 35), (35, 122), (130, 140)),
    30: ((-115, -97), (-83, -80), (-15, 35), (35, 122)),
    25: ((-110, -97), (-85, -75), (-17, 37), (39, 59), (68, 90), (92, 117)),
    20: ((-105, -88), (-74, -68), (-17, 40), (42, 52), (73, 86), (94, 110), (120, 122)),
    15: ((-92, -83), (-17, 51), (74, 80), (98, 109), (120, 126)),
    10: ((-83, -60), (-13, 48), (80, 82), (98, 104), (122, 126)),
    5: ((-80, -50), (9, 42), (95, 104), (109, 119)),
    0: ((-81, -35), (9, 40), (100, 106), (109, 117), (119, 125), (132, 150)),
    -5: ((-80, -35), (12, 40), (105, 115), (138, 150)),
    -10: ((-77, -37), (13, 41), (48, 50), (130, 143)),
    -15: ((-75, -39), (12, 37), (44, 50), (122, 146)),
    -20: ((-70, -40), (13, 35), (43, 48), (114, 151)),
    -25: ((-71, -48), (15, 33), (113, 153)),
    -30: ((-72, -52), (18, 28), (115, 152)),
    -35: ((-73, -57), (140, 150), (174, 178)),
    -40: ((-74, -63), (145, 148), (170, 176)),
    -45: ((-75, -66), (166, 171)),
    -50: ((-75, -68),),
}
BRAILLE_BASE = 0x2800
# Bit of each dot in a braille cell, by (column, row) inside the 2 x 4 cell.
BRAILLE_BITS = {(0, 0): 0x01, (0, 1): 0x02, (0, 2): 0x04, (0, 3): 0x40,
                (1, 0): 0x08, (1, 1): 0x10, (1, 2): 0x20, (1, 3): 0x80}


def is_land(lat: float, lon: float) -> bool:
    band = LAND.get(5 * math.floor(lat / 5) + 5, ())
    return any(lo <= lon < hi for lo, hi in band)


# ----------------------------------------------------------------- logins per day


def day_chart(days: Sequence[DayCount], width: int, height: int) -> Text:
    """A stacked bar per day (successes ``█`` at the bottom, failures ``▒`` on top), the
    newest days that fit in ``width``, a scale on the left and dates under it."""
    height = max(3, height)
    scale_w = 4
    shown = list(days)[-max(1, width - scale_w):]
    peak = max((d.succeeded + d.failed for d in shown), default=0)
    rows = height - 2  # bars; then the date axis and the legend
    out = Text(no_wrap=True, overflow="crop")
    for level in range(rows, 0, -1):
        label = str(peak) if level == rows else ("0" if level == 1 and peak == 0 else "")
        out.append(f"{label:>{scale_w - 1}}│", style="dim")
        for d in shown:
            ok_h, fail_h = _bar_heights(d, peak, rows)
            if level <= ok_h:
                out.append(OK_GLYPH, style=OK_STYLE)
            elif level <= ok_h + fail_h:
                out.append(FAIL_GLYPH, style=FAIL_STYLE)
            else:
                out.append(" ")
        out.append("\n")
    out.append(" " * (scale_w - 1) + "└", style="dim")
    out.append(_date_axis([d.day for d in shown]), style="dim")
    out.append("\n")
    ok = sum(d.succeeded for d in shown)
    failed = sum(d.failed for d in shown)
    out.append(f"{OK_GLYPH} ", style=OK_STYLE)
    out.append(f"{ok} ok  ")
    out.append(f"{FAIL_GLYPH} ", style=FAIL_STYLE)
    out.append(f"{failed} failed  ")
    out.append(f"{len(shown)} days", style="dim")
    return out


def _bar_heights(d: DayCount, peak: int, rows: int) -> tuple[int, int]:
    """Rows of successes and of failures; any non-zero count gets at least one row."""
    if peak == 0:
        return 0, 0
    total = d.succeeded + d.failed
    bar = max(1, round(total * rows / peak)) if total else 0
    fail_h = max(1, round(d.failed * bar / total)) if d.failed else 0
    ok_h = bar - fail_h
    if d.succeeded and ok_h == 0 and bar > 1:
        ok_h, fail_h = 1, bar - 1
    return ok_h, fail_h


def _date_axis(days: Sequence[date]) -> str:
    """``MM-DD`` labels under the bars, first day and then every 7th, never overlapping."""
    axis = [" "] * len(days)
    pos = 0
    while pos < len(days):
        label = f"{days[pos]:%m-%d}"
        if pos + len(label) > len(days):
            break
        axis[pos:pos + len(label)] = label
        pos += max(7, len(label) + 1)
    return "".join(axis)


# --------------------------------------------------------------------------- map


def _view(points: Sequence[LocatedLogin], cols: int, rows: int
          ) -> tuple[float, float, float, float]:
    """West, north, degrees per dot across and down: the points' box with a margin, at
    least 40° x 20°, widened so that a dot spans as many degrees across as down."""
    if points:
        lons = [p.longitude for p in points]
        lats = [p.latitude for p in points]
        west, east, south, north = min(lons), max(lons), min(lats), max(lats)
    else:
        west, east, south, north = -180.0, 180.0, -60.0, 85.0
    lon_span = max(40.0, (east - west) * 1.3)
    lat_span = max(20.0, (north - south) * 1.3)
    dots_x, dots_y = 2 * cols, 4 * rows
    per_dot = max(lon_span / dots_x, lat_span / dots_y)
    centre_lon, centre_lat = (west + east) / 2, (south + north) / 2
    return (centre_lon - per_dot * dots_x / 2, centre_lat + per_dot * dots_y / 2,
            per_dot, per_dot)


def location_map(points: Sequence[LocatedLogin], width: int, height: int) -> Text:
    """Login places on a braille map; consecutive logins joined by a line, the trips
    flagged as impossible travel in red with ``!`` at their ends. The last line is the
    legend with the view's extent."""
    cols, rows = max(10, width), max(3, height - 1)
    west, north, dx, dy = _view(points, cols, rows)
    dots: dict[tuple[int, int], int] = {}  # cell -> braille bits
    alarm: set[tuple[int, int]] = set()  # cells on an impossible trip

    def dot(lon: float, lat: float) -> tuple[int, int] | None:
        x, y = int((lon - west) / dx), int((north - lat) / dy)
        if 0 <= x < 2 * cols and 0 <= y < 4 * rows:
            return x, y
        return None

    def plot(x: int, y: int, bad: bool) -> None:
        cell = (x // 2, y // 4)
        dots[cell] = dots.get(cell, 0) | BRAILLE_BITS[(x % 2, y % 4)]
        if bad:
            alarm.add(cell)

    for prev, cur in itertools.pairwise(points):
        a = dot(prev.longitude, prev.latitude)
        b = dot(cur.longitude, cur.latitude)
        if a is None or b is None:
            continue
        steps = max(abs(b[0] - a[0]), abs(b[1] - a[1]), 1)
        for i in range(steps + 1):
            plot(round(a[0] + (b[0] - a[0]) * i / steps),
                 round(a[1] + (b[1] - a[1]) * i / steps), cur.impossible_travel)
    marks: dict[tuple[int, int], tuple[str, str]] = {}
    for index, p in enumerate(points):
        at = dot(p.longitude, p.latitude)
        if at is None:
            continue
        cell = (at[0] // 2, at[1] // 4)
        flagged = p.impossible_travel or (
            index + 1 < len(points) and points[index + 1].impossible_travel)
        last = index == len(points) - 1
        if flagged:
            marks[cell] = ("!", "bold red")
        elif cell not in marks or last:
            marks[cell] = ("@" if last else "o", "bold cyan" if last else "cyan")
    out = Text(no_wrap=True, overflow="crop")
    for row in range(rows):
        for col in range(cols):
            cell = (col, row)
            if cell in marks:
                out.append(*marks[cell])
            elif cell in dots:
                out.append(chr(BRAILLE_BASE + dots[cell]),
                           style="red" if cell in alarm else "cyan")
            elif is_land(north - (row * 4 + 2) * dy, west + (col * 2 + 1) * dx):
                out.append("·", style="dim green")
            else:
                out.append(" ")
        out.append("\n")
    out.append("o login @ last ", style="dim")
    out.append("! impossible trip", style="red")
    if not points:
        out.append(" · no login with a known place yet", style="dim")
        return out
    out.append(f" {_lat(north - 4 * rows * dy)}..{_lat(north)} "
               f"{_lon(west)}..{_lon(west + 2 * cols * dx)}", style="dim")
    return out


def _lat(value: float) -> str:
    value = max(-90.0, min(90.0, value))  # the view may reach past a pole; the earth not
    return f"{abs(value):.0f}°{'N' if value >= 0 else 'S'}"


def _lon(value: float) -> str:
    value = (value + 180) % 360 - 180
    return f"{abs(value):.0f}°{'E' if value >= 0 else 'W'}"
