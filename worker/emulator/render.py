"""Rendering of stored cells in the three ``valueFormat`` modes of ``listRows``.

``rich`` returns plain text wrapped in a triple-backtick fence and JSON-LD objects for currency,
person, lookup, link and image cells. ``simple`` returns one string, number or boolean per cell and
joins multi-value cells with ``", "``. ``simpleWithArrays`` returns simple values but keeps
multi-value cells as JSON arrays. Empty cells are ``""`` in every format, as the real API sends them.
"""

from __future__ import annotations

import logging
from typing import Any

from worker.emulator.values import (
    SCHEMA_ORG_CONTEXT,
    CurrencyAmount,
    ImageRef,
    Markdown,
    PersonRef,
    RowRef,
    WebLink,
    row_browser_link,
    table_browser_link,
)

logger = logging.getLogger(__name__)

VALUE_FORMATS = ("simple", "simpleWithArrays", "rich")

# Column types whose plain-string cells come back fenced in ``rich``. Select, email and date cells
# are strings too, but Coda does not describe them as Markdown text.
FENCED_TEXT_TYPES = frozenset({"text"})

CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "BRL": "R$", "INR": "₹"}
ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "KRW"})


def render_cell(stored: Any, *, column_type: str, is_array: bool, value_format: str) -> Any:
    """Render one stored cell as ``listRows`` returns it in ``value_format``.

    Raises:
        ValueError: ``value_format`` is not one of :data:`VALUE_FORMATS`.
    """
    if value_format not in VALUE_FORMATS:
        raise ValueError(f"unknown valueFormat {value_format!r}; expected one of {VALUE_FORMATS}")

    if is_empty(stored):
        return ""

    if is_array or isinstance(stored, list | tuple):
        return _render_array(stored, column_type, value_format)

    if value_format == "rich":
        return rich_value(stored, column_type)
    return simple_value(stored)


def is_empty(stored: Any) -> bool:
    """Return whether a stored cell counts as empty (``None``, ``""`` or an empty list)."""
    return stored is None or stored == "" or (isinstance(stored, list | tuple) and not stored)


def _render_array(stored: Any, column_type: str, value_format: str) -> Any:
    items = list(stored) if isinstance(stored, list | tuple) else [stored]
    items = [item for item in items if not is_empty(item)]
    if not items:
        return ""

    if value_format == "rich":
        return [rich_value(item, column_type) for item in items]

    simple_items = [simple_value(item) for item in items]
    if value_format == "simpleWithArrays":
        return simple_items
    return ", ".join(_as_text(item) for item in simple_items)


def simple_value(stored: Any) -> str | int | float | bool:
    """Return the ``simple`` form of one non-empty stored value."""
    if isinstance(stored, Markdown):
        return stored.plain_text()
    if isinstance(stored, CurrencyAmount):
        return format_currency(stored)
    if isinstance(stored, PersonRef | RowRef | ImageRef):
        return stored.name
    if isinstance(stored, WebLink):
        return stored.url
    if isinstance(stored, str | int | float | bool):
        return stored
    raise TypeError(f"cannot render a cell of type {type(stored).__name__}: {stored!r}")


def rich_value(stored: Any, column_type: str) -> Any:
    """Return the ``rich`` form of one non-empty stored value."""
    if isinstance(stored, str):
        return f"```{stored}```" if column_type in FENCED_TEXT_TYPES else stored
    if isinstance(stored, Markdown):
        return stored.markdown
    if isinstance(stored, int | float | bool):
        return stored
    return _linked_data(stored)


def _linked_data(stored: Any) -> dict[str, Any]:
    if isinstance(stored, CurrencyAmount):
        fields: dict[str, Any] = {
            "@type": "MonetaryAmount",
            "currency": stored.currency,
            "amount": stored.amount,
        }
    elif isinstance(stored, PersonRef):
        fields = {"@type": "Person", "name": stored.name, "email": stored.email}
    elif isinstance(stored, RowRef):
        fields = _row_reference(stored)
    elif isinstance(stored, WebLink):
        fields = {"@type": "WebPage", "url": stored.url, "name": stored.name}
    elif isinstance(stored, ImageRef):
        fields = {
            "@type": "ImageObject",
            "name": stored.name,
            "url": stored.url,
            "width": stored.width,
            "height": stored.height,
            "status": stored.status,
        }
    else:
        raise TypeError(f"cannot render a cell of type {type(stored).__name__}: {stored!r}")

    # Optional fields that were not given are left out rather than sent as null, because the
    # spec types them as plain strings and numbers.
    present = {key: value for key, value in fields.items() if value is not None}
    return {"@context": SCHEMA_ORG_CONTEXT, **present}


def _row_reference(stored: RowRef) -> dict[str, Any]:
    return {
        "@type": "StructuredValue",
        "additionalType": "row",
        "name": stored.name,
        "url": row_browser_link(stored.doc_id, stored.table_id, stored.row_id),
        "tableId": stored.table_id,
        "rowId": stored.row_id,
        "tableUrl": table_browser_link(stored.doc_id, stored.table_id),
    }


def format_currency(value: CurrencyAmount) -> str:
    """Format a currency cell as display text, e.g. ``"$1,234.50"`` or ``"-€3.00"``.

    Codes without a known symbol are written as a prefix (``"CHF 12.00"``).
    """
    amount = float(value.amount)
    decimals = 0 if value.currency in ZERO_DECIMAL_CURRENCIES else 2
    digits = f"{abs(amount):,.{decimals}f}"
    symbol = CURRENCY_SYMBOLS.get(value.currency, f"{value.currency} ")
    sign = "-" if amount < 0 else ""
    return f"{sign}{symbol}{digits}"


def _as_text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
