"""Cell values that the emulator stores, in the shape of Coda's rich value format.

A stored cell is one of: ``None`` or ``""`` (empty), ``str`` (plain text, or a select option or
email), :class:`Markdown`, ``int``/``float``, ``bool``, an ISO-8601 string for date, dateTime and
time columns, :class:`CurrencyAmount`, :class:`PersonRef`, :class:`RowRef`, :class:`WebLink`,
:class:`ImageRef`, or a list of these for ``is_array`` columns. The lowercase helpers at the end
build them with short calls in tests and in the sample doc.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)

SCHEMA_ORG_CONTEXT = "http://schema.org/"
BROWSER_ORIGIN = "https://coda.io"


@dataclass(frozen=True)
class Markdown:
    """Text with formatting, which ``valueFormat=rich`` returns as Markdown without a code fence.

    ``plain`` is the text that ``simple`` returns. When omitted, it is the Markdown with its
    emphasis markers (``**``, ``__``, ``~~``, backticks) removed.
    """

    markdown: str
    plain: str | None = None

    def plain_text(self) -> str:
        if self.plain is not None:
            return self.plain
        text = self.markdown
        for marker in ("**", "__", "~~", "`"):
            text = text.replace(marker, "")
        return text


@dataclass(frozen=True)
class CurrencyAmount:
    """A currency cell: an ISO 4217 code and an amount."""

    currency: str
    amount: float | int | str


@dataclass(frozen=True)
class PersonRef:
    """A person cell."""

    name: str
    email: str | None = None


@dataclass(frozen=True)
class RowRef:
    """A lookup (relation) cell that points to a row of another table."""

    doc_id: str
    table_id: str
    row_id: str
    name: str


@dataclass(frozen=True)
class WebLink:
    """A hyperlink cell."""

    url: str
    name: str | None = None


@dataclass(frozen=True)
class ImageRef:
    """An image cell. ``status`` is one of ``live``, ``deleted``, ``failed``."""

    name: str
    url: str
    width: int | float | None = None
    height: int | float | None = None
    status: str = "live"


def table_browser_link(doc_id: str, table_id: str) -> str:
    """Return the browser URL of a table, in the ``/_d<doc>#_tu<table>`` form Coda sends."""
    return f"{BROWSER_ORIGIN}/d/_d{doc_id}#_tu{table_id}"


def row_browser_link(doc_id: str, table_id: str, row_id: str) -> str:
    """Return the browser URL of a row, in the ``/_d<doc>#_tu<table>/_ru<row>`` form Coda sends."""
    return f"{table_browser_link(doc_id, table_id)}/_ru{row_id}"


def currency(code: str, amount: float | int | str) -> CurrencyAmount:
    """Build a currency cell, e.g. ``currency("USD", 1234.5)``."""
    return CurrencyAmount(code, amount)


def person(name: str, email: str | None = None) -> PersonRef:
    """Build a person cell."""
    return PersonRef(name, email)


def lookup(name: str, *, doc_id: str, table_id: str, row_id: str) -> RowRef:
    """Build a lookup cell named ``name`` that points to ``row_id`` in ``table_id``."""
    return RowRef(doc_id, table_id, row_id, name)


def link(url: str, name: str | None = None) -> WebLink:
    """Build a hyperlink cell."""
    return WebLink(url, name)


def image(
    name: str,
    url: str,
    width: int | float | None = None,
    height: int | float | None = None,
    status: str = "live",
) -> ImageRef:
    """Build an image cell."""
    return ImageRef(name, url, width, height, status)


def date_cell(day: dt.date, utc_offset: str = "+00:00") -> str:
    """Format a date cell as Coda does: midnight in the doc's time zone, with milliseconds.

    Coda was seen returning ``"2024-02-08T00:00:00.000-04:00"`` for a date in a doc at UTC-4.
    """
    return f"{day.isoformat()}T00:00:00.000{utc_offset}"


def datetime_cell(moment: dt.datetime) -> str:
    """Format a dateTime cell as ISO 8601 with milliseconds and the moment's UTC offset.

    A naive datetime is taken as UTC.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.isoformat(timespec="milliseconds")


def time_cell(clock_time: dt.time, utc_offset: str = "+00:00") -> str:
    """Format a time cell as ``HH:MM:SS.mmm`` plus a UTC offset.

    NOTE: the shape Coda returns for time-only cells is not documented or recorded; this is a guess
    that follows the date and dateTime shapes.
    """
    return f"{clock_time.replace(tzinfo=None).isoformat(timespec='milliseconds')}{utc_offset}"
