"""Rendering of stored cells in the simple, simpleWithArrays and rich value formats."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from worker.emulator import (
    Markdown,
    currency,
    date_cell,
    datetime_cell,
    image,
    link,
    lookup,
    person,
    time_cell,
)
from worker.emulator.render import format_currency, render_cell

CONTEXT = "http://schema.org/"


def render(stored: Any, column_type: str, value_format: str, is_array: bool = False) -> Any:
    return render_cell(stored, column_type=column_type, is_array=is_array, value_format=value_format)


# (case id, column type, stored cell, simple, rich); simpleWithArrays equals simple for scalars.
SCALAR_CASES = [
    ("text", "text", "Alpha", "Alpha", "```Alpha```"),
    (
        "text-unicode",
        "text",
        "Zürich – 東京 🚀\nline 2",
        "Zürich – 東京 🚀\nline 2",
        "```Zürich – 東京 🚀\nline 2```",
    ),
    ("markdown", "text", Markdown("**Urgent** call"), "Urgent call", "**Urgent** call"),
    ("markdown-plain", "text", Markdown("_x_", plain="x"), "x", "_x_"),
    ("number-int", "number", 3, 3, 3),
    ("number-float", "number", 2.5, 2.5, 2.5),
    ("percent", "percent", 0.25, 0.25, 0.25),
    ("slider", "slider", 7, 7, 7),
    ("scale", "scale", 4, 4, 4),
    ("checkbox-true", "checkbox", True, True, True),
    ("checkbox-false", "checkbox", False, False, False),
    ("select", "select", "VIP", "VIP", "VIP"),
    ("email", "email", "ada@example.test", "ada@example.test", "ada@example.test"),
    (
        "date",
        "date",
        "2024-02-08T00:00:00.000-04:00",
        "2024-02-08T00:00:00.000-04:00",
        "2024-02-08T00:00:00.000-04:00",
    ),
    (
        "datetime",
        "dateTime",
        "2024-02-08T16:02:21.462Z",
        "2024-02-08T16:02:21.462Z",
        "2024-02-08T16:02:21.462Z",
    ),
]


@pytest.mark.parametrize(
    ("column_type", "stored", "simple", "rich"),
    [case[1:] for case in SCALAR_CASES],
    ids=[case[0] for case in SCALAR_CASES],
)
def test_render_scalar_cells(column_type: str, stored: Any, simple: Any, rich: Any) -> None:
    assert render(stored, column_type, "simple") == simple
    assert render(stored, column_type, "simpleWithArrays") == simple
    assert render(stored, column_type, "rich") == rich


def test_render_currency() -> None:
    cell = currency("USD", 1234.5)

    assert render(cell, "currency", "simple") == "$1,234.50"
    assert render(cell, "currency", "simpleWithArrays") == "$1,234.50"
    assert render(cell, "currency", "rich") == {
        "@context": CONTEXT,
        "@type": "MonetaryAmount",
        "currency": "USD",
        "amount": 1234.5,
    }


@pytest.mark.parametrize(
    ("code", "amount", "text"),
    [
        ("USD", -5, "-$5.00"),
        ("EUR", 19.5, "€19.50"),
        ("BRL", 35, "R$35.00"),
        ("JPY", 1200, "¥1,200"),
        ("CHF", "12.5", "CHF 12.50"),
    ],
)
def test_format_currency_symbols(code: str, amount: Any, text: str) -> None:
    assert format_currency(currency(code, amount)) == text


def test_render_person() -> None:
    cell = person("Ada Example", "ada@example.test")

    assert render(cell, "person", "simple") == "Ada Example"
    assert render(cell, "person", "rich") == {
        "@context": CONTEXT,
        "@type": "Person",
        "name": "Ada Example",
        "email": "ada@example.test",
    }


def test_render_person_without_email_omits_it() -> None:
    assert render(person("Ada"), "person", "rich") == {"@context": CONTEXT, "@type": "Person", "name": "Ada"}


def test_render_lookup() -> None:
    cell = lookup("Acme", doc_id="FakeDoc01", table_id="grid-T9", row_id="i-c7")

    assert render(cell, "lookup", "simple") == "Acme"
    assert render(cell, "lookup", "rich") == {
        "@context": CONTEXT,
        "@type": "StructuredValue",
        "additionalType": "row",
        "name": "Acme",
        "url": "https://coda.io/d/_dFakeDoc01#_tugrid-T9/_rui-c7",
        "tableId": "grid-T9",
        "rowId": "i-c7",
        "tableUrl": "https://coda.io/d/_dFakeDoc01#_tugrid-T9",
    }


def test_render_link() -> None:
    cell = link("https://example.test/spec", "Spec")

    assert render(cell, "link", "simple") == "https://example.test/spec"
    assert render(cell, "link", "rich") == {
        "@context": CONTEXT,
        "@type": "WebPage",
        "url": "https://example.test/spec",
        "name": "Spec",
    }


def test_render_image() -> None:
    cell = image("plan.png", "https://example.test/plan.png", 800, 600)

    assert render(cell, "image", "simple") == "plan.png"
    assert render(cell, "image", "rich") == {
        "@context": CONTEXT,
        "@type": "ImageObject",
        "name": "plan.png",
        "url": "https://example.test/plan.png",
        "width": 800,
        "height": 600,
        "status": "live",
    }


def test_render_select_array() -> None:
    cell = ["Acme, Inc.", "VIP"]

    assert render(cell, "select", "simple", is_array=True) == "Acme, Inc., VIP"
    assert render(cell, "select", "simpleWithArrays", is_array=True) == ["Acme, Inc.", "VIP"]
    assert render(cell, "select", "rich", is_array=True) == ["Acme, Inc.", "VIP"]


def test_render_text_array_fences_each_item() -> None:
    assert render(["a", "b"], "text", "rich", is_array=True) == ["```a```", "```b```"]
    assert render(["a", "b"], "text", "simple", is_array=True) == "a, b"


def test_render_person_array() -> None:
    cell = [person("A", "a@example.test"), person("B", "b@example.test")]

    assert render(cell, "person", "simple", is_array=True) == "A, B"
    assert render(cell, "person", "simpleWithArrays", is_array=True) == ["A", "B"]
    rich = render(cell, "person", "rich", is_array=True)
    assert [item["email"] for item in rich] == ["a@example.test", "b@example.test"]


def test_render_currency_array() -> None:
    cell = [currency("USD", 12.34), currency("USD", 56.78)]

    assert render(cell, "currency", "simple", is_array=True) == "$12.34, $56.78"
    assert render(cell, "currency", "simpleWithArrays", is_array=True) == ["$12.34", "$56.78"]
    assert [item["amount"] for item in render(cell, "currency", "rich", is_array=True)] == [12.34, 56.78]


def test_render_number_array_keeps_numbers_with_arrays() -> None:
    assert render([1, 2.5], "number", "simpleWithArrays", is_array=True) == [1, 2.5]
    assert render([1, 2.5], "number", "simple", is_array=True) == "1, 2.5"


def test_render_single_value_in_array_column() -> None:
    assert render("VIP", "select", "simpleWithArrays", is_array=True) == ["VIP"]


@pytest.mark.parametrize("value_format", ["simple", "simpleWithArrays", "rich"])
@pytest.mark.parametrize("stored", [None, "", []], ids=["none", "empty-string", "empty-list"])
@pytest.mark.parametrize("column_type", ["text", "number", "currency", "person", "select", "checkbox"])
def test_render_empty_cells(column_type: str, stored: Any, value_format: str) -> None:
    assert render(stored, column_type, value_format) == ""
    assert render(stored, column_type, value_format, is_array=True) == ""


def test_render_rejects_unknown_format() -> None:
    with pytest.raises(ValueError, match="valueFormat"):
        render("x", "text", "html")


def test_render_rejects_unknown_cell_type() -> None:
    with pytest.raises(TypeError, match="object"):
        render(object(), "text", "simple")


def test_date_helpers() -> None:
    assert date_cell(dt.date(2024, 2, 8), "-04:00") == "2024-02-08T00:00:00.000-04:00"
    assert datetime_cell(dt.datetime(2024, 2, 8, 16, 2, 21, 462000)) == "2024-02-08T16:02:21.462+00:00"
    assert time_cell(dt.time(9, 30), "+02:00") == "09:30:00.000+02:00"
