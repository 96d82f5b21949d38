"""The emulator's responses and accepted parameters checked against Coda's OpenAPI spec 1.5.0.

The spec is read from DEFAULT_SPEC, or from the file named by ``CODA_OPENAPI_SPEC``. The tests
skip when that file does not exist.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from worker.emulator import (
    ACCEPTED_PARAMETERS,
    LIST_ROWS_PARAMETERS,
    CodaEmulator,
    Column,
    Fault,
    Markdown,
    build_sample,
    currency,
    date_cell,
    datetime_cell,
    image,
    link,
    lookup,
    person,
    time_cell,
)

SPEC_VARIABLE = "CODA_OPENAPI_SPEC"
DEFAULT_SPEC = Path(__file__).resolve().parents[2].parent / "shared" / "coda" / "openapi.json"
SPEC_URI = "urn:coda-openapi"
DOC = "TypesDoc01"
TYPES = "grid-Types"
PEOPLE = "grid-People"
VIEW = "table-Checked"
RICH_TYPES = {"MonetaryAmount", "Person", "StructuredValue", "WebPage", "ImageObject"}

# Coda's generator gives the rich-value union no discriminator mapping, and its "@type" values
# are not schema names, so OpenAPI's implicit mapping would look for schemas that do not exist.
RICH_VALUE_MAPPING = {
    "MonetaryAmount": "#/components/schemas/CurrencyValue",
    "ImageObject": "#/components/schemas/ImageUrlValue",
    "Person": "#/components/schemas/PersonValue",
    "WebPage": "#/components/schemas/UrlValue",
    "StructuredValue": "#/components/schemas/RowValue",
}
# ColumnFormatType lists these three types, but the ColumnFormat discriminator maps none of them.
MISSING_FORMAT_MAPPING = {
    "email": "#/components/schemas/EmailColumnFormat",
    "link": "#/components/schemas/LinkColumnFormat",
    "reaction": "#/components/schemas/SimpleColumnFormat",
}


def spec_path() -> Path:
    return Path(os.environ.get(SPEC_VARIABLE, DEFAULT_SPEC))


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    path = spec_path()
    if not path.is_file():
        pytest.skip(f"OpenAPI spec not found at {path}; set {SPEC_VARIABLE} to its location")
    return json.loads(path.read_text(encoding="utf-8"))


def repair_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of the spec with its known defects fixed, so that valid objects can pass.

    1. ``Table.required`` names ``viewId``, which is not among its properties while
       ``additionalProperties`` is false, so no object can satisfy it. It is dropped.
    2. Coda composes schemas with ``allOf`` whose members each set ``additionalProperties:
       false``. JSON Schema applies each member on its own, so an object with fields from two
       members (a currency value, a lookup column format) fails both. Members are merged into
       one schema that keeps ``additionalProperties: false`` over the union of properties.
    3. Discriminator mappings that are missing are added (see the constants above).
    """
    fixed = copy.deepcopy(spec)
    schemas = fixed["components"]["schemas"]
    originals = copy.deepcopy(schemas)

    table_required = schemas["Table"]["required"]
    if "viewId" in table_required and "viewId" not in schemas["Table"]["properties"]:
        table_required.remove("viewId")

    for name, schema in schemas.items():
        schemas[name] = merge_all_of(schema, originals)

    schemas["RichSingleValue"]["discriminator"].setdefault("mapping", {}).update(RICH_VALUE_MAPPING)
    format_mapping = schemas["ColumnFormat"]["discriminator"]["mapping"]
    for format_type, target in MISSING_FORMAT_MAPPING.items():
        format_mapping.setdefault(format_type, target)
    return fixed


def merge_all_of(node: Any, schemas: dict[str, Any]) -> Any:
    """Replace every ``allOf`` in ``node`` by the merge of its (dereferenced) members."""
    if isinstance(node, list):
        return [merge_all_of(item, schemas) for item in node]
    if not isinstance(node, dict):
        return node

    node = {key: merge_all_of(value, schemas) for key, value in node.items()}
    if "allOf" not in node:
        return node

    merged = {key: value for key, value in node.items() if key != "allOf"}
    for member in node["allOf"]:
        if "$ref" in member:
            member = merge_all_of(copy.deepcopy(schemas[member["$ref"].rsplit("/", 1)[1]]), schemas)
        for key, value in member.items():
            if key == "properties":
                merged.setdefault("properties", {}).update(value)
            elif key == "required":
                merged["required"] = sorted(set(merged.get("required", [])) | set(value))
            elif key == "additionalProperties":
                merged[key] = value if merged.get(key, True) is True else merged[key]
            else:
                merged.setdefault(key, value)
    return merged


@pytest.fixture(scope="module")
def registry(spec: dict[str, Any]) -> Registry:
    resource = Resource.from_contents(repair_spec(spec), default_specification=DRAFT4)
    return Registry().with_resource(SPEC_URI, resource)


def find_operation(spec: dict[str, Any], operation_id: str) -> tuple[str, dict[str, Any]]:
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            if isinstance(operation, dict) and operation.get("operationId") == operation_id:
                assert method == "get", f"{operation_id} is not a GET"
                return path, operation
    raise AssertionError(f"operation {operation_id} is not in the spec")


def response_schema_pointer(spec: dict[str, Any], operation_id: str, status: int) -> str:
    path, operation = find_operation(spec, operation_id)
    response = operation["responses"].get(str(status))
    assert response is not None, f"the spec declares no {status} response for {operation_id}"

    if "$ref" in response:
        pointer = response["$ref"].removeprefix("#")
    else:
        escaped = path.replace("~", "~0").replace("/", "~1")
        pointer = f"/paths/{escaped}/get/responses/{status}"
    return pointer + "/content/application~1json/schema"


def assert_matches_spec(
    spec: dict[str, Any], registry: Registry, operation_id: str, response: httpx.Response
) -> None:
    pointer = response_schema_pointer(spec, operation_id, response.status_code)
    validator = OAS30Validator(
        {"$ref": f"{SPEC_URI}#{pointer}"}, registry=registry, format_checker=oas30_format_checker
    )
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message[:300]}"
        for error in validator.iter_errors(response.json())
    ]
    assert not errors, f"{operation_id} {response.status_code} does not match the spec:\n" + "\n".join(errors)


def add_types_doc(emu: CodaEmulator) -> None:
    emu.add_doc(DOC, name="Every type")
    emu.add_table(DOC, PEOPLE, name="People", columns=[Column("c-name", "Name", "text", display=True)])
    emu.add_row(DOC, PEOPLE, {"c-name": "Ada"}, row_id="i-ada")
    emu.add_table(DOC, TYPES, name="Types", columns=type_columns())
    emu.add_row(DOC, TYPES, full_row(), row_id="i-full")
    emu.add_row(DOC, TYPES, {"c-text": "only a name"}, row_id="i-empty")
    emu.add_row(DOC, TYPES, {"c-text": "Zürich – 東京 🚀\nline 2", "c-check": True}, row_id="i-unicode")
    emu.add_table(
        DOC, VIEW, name="Checked", parent_table_id=TYPES, view_filter=lambda v: v.get("c-check") is True
    )
    emu.add_token("tok-all", user="alice@example.test")
    emu.add_token("tok-table", user="bob@example.test", scope=("table", DOC, TYPES))


def type_columns() -> list[Column]:
    return [
        Column("c-text", "Text", "text", display=True),
        Column("c-md", "Markdown", "text"),
        Column("c-number", "Number", "number"),
        Column("c-percent", "Percent", "percent"),
        Column("c-money", "Money", "currency"),
        Column("c-monies", "Monies", "currency", is_array=True),
        Column("c-date", "Date", "date"),
        Column("c-datetime", "Date time", "dateTime"),
        Column("c-time", "Time", "time"),
        Column("c-check", "Check", "checkbox"),
        Column("c-select", "Select", "select", options=("A", "B")),
        Column("c-tags", "Tags", "select", is_array=True),
        Column("c-person", "Person", "person", ref_table=PEOPLE),
        Column("c-people", "People", "person", is_array=True, ref_table=PEOPLE),
        Column("c-lookup", "Lookup", "lookup", ref_table=PEOPLE),
        Column("c-lookups", "Lookups", "lookup", is_array=True, ref_table=PEOPLE),
        Column("c-link", "Link", "link"),
        Column("c-image", "Image", "image"),
        Column("c-images", "Images", "image", is_array=True),
        Column("c-email", "Email", "email"),
        Column("c-slider", "Slider", "slider"),
        Column("c-scale", "Scale", "scale"),
        Column("c-formula", "Formula", "number", formula="thisRow.Number * 2"),
        Column("c-hidden", "Hidden", "text", hidden=True),
    ]


def full_row() -> dict[str, Any]:
    ada = lookup("Ada", doc_id=DOC, table_id=PEOPLE, row_id="i-ada")
    return {
        "c-text": "Alpha",
        "c-md": Markdown("**Urgent** call"),
        "c-number": 3,
        "c-percent": 0.25,
        "c-money": currency("USD", 1234.5),
        "c-monies": [currency("EUR", 1), currency("JPY", "1200")],
        "c-date": date_cell(dt.date(2024, 2, 8), "-04:00"),
        "c-datetime": datetime_cell(dt.datetime(2024, 2, 8, 16, 2, 21, tzinfo=dt.UTC)),
        "c-time": time_cell(dt.time(9, 30)),
        "c-check": True,
        "c-select": "A",
        "c-tags": ["Acme, Inc.", "VIP"],
        "c-person": person("Ada Example", "ada@example.test"),
        "c-people": [person("Ada Example", "ada@example.test"), person("Bo")],
        "c-lookup": ada,
        "c-lookups": [ada, ada],
        "c-link": link("https://example.test/spec", "Spec"),
        "c-image": image("plan.png", "https://example.test/plan.png", 800, 600),
        "c-images": [image("a.png", "https://example.test/a.png")],
        "c-email": "ada@example.test",
        "c-slider": 7,
        "c-scale": 4,
        "c-formula": 6,
        "c-hidden": "secret",
    }


@pytest.fixture(scope="module")
def emu() -> Iterator[CodaEmulator]:
    emulator = CodaEmulator()
    add_types_doc(emulator)
    emulator.sample = build_sample(emulator)  # type: ignore[attr-defined]
    with emulator:
        yield emulator


@pytest.fixture(scope="module")
def plain(emu: CodaEmulator) -> Iterator[httpx.Client]:
    """A client without credentials, for requests that choose their own token."""
    with httpx.Client(base_url=emu.base_url, timeout=5) as http:
        yield http


@pytest.fixture(scope="module")
def client(emu: CodaEmulator) -> Iterator[httpx.Client]:
    headers = {"Authorization": "Bearer tok-all"}
    with httpx.Client(base_url=emu.base_url, headers=headers, timeout=5) as http:
        yield http


def collect_types(value: Any) -> set[str]:
    if isinstance(value, list):
        return set().union(*(collect_types(item) for item in value)) if value else set()
    if isinstance(value, dict):
        return {value.get("@type", "")}
    return set()


@pytest.mark.parametrize("value_format", ["simple", "simpleWithArrays", "rich"])
def test_list_rows_matches_spec(
    spec: dict[str, Any], registry: Registry, client: httpx.Client, value_format: str
) -> None:
    response = client.get(f"/docs/{DOC}/tables/{TYPES}/rows", params={"valueFormat": value_format})

    assert_matches_spec(spec, registry, "listRows", response)
    if value_format == "rich":
        cells = response.json()["items"][0]["values"].values()
        assert set().union(*(collect_types(cell) for cell in cells)) >= RICH_TYPES


@pytest.mark.parametrize("value_format", ["simple", "rich"])
def test_sample_deals_match_spec(
    spec: dict[str, Any], registry: Registry, emu: CodaEmulator, client: httpx.Client, value_format: str
) -> None:
    sample = emu.sample  # type: ignore[attr-defined]
    path = f"/docs/{sample.doc_id}/tables/{sample.deals_table_id}/rows"

    response = client.get(path, params={"valueFormat": value_format, "limit": 200})

    assert len(response.json()["items"]) == 200
    assert_matches_spec(spec, registry, "listRows", response)


def test_paged_rows_match_spec(spec: dict[str, Any], registry: Registry, client: httpx.Client) -> None:
    path = f"/docs/{DOC}/tables/{TYPES}/rows"
    first = client.get(path, params={"limit": 2, "useColumnNames": "true"})
    last = client.get(path, params={"pageToken": first.json()["nextPageToken"]})

    assert_matches_spec(spec, registry, "listRows", first)
    assert_matches_spec(spec, registry, "listRows", last)
    assert "nextSyncToken" in last.json()


def test_get_row_matches_spec(spec: dict[str, Any], registry: Registry, client: httpx.Client) -> None:
    response = client.get(f"/docs/{DOC}/tables/{TYPES}/rows/i-full", params={"valueFormat": "rich"})

    assert_matches_spec(spec, registry, "getRow", response)


@pytest.mark.parametrize("table_id", [TYPES, VIEW], ids=["table", "view"])
def test_get_table_matches_spec(
    spec: dict[str, Any], registry: Registry, client: httpx.Client, table_id: str
) -> None:
    response = client.get(f"/docs/{DOC}/tables/{table_id}")

    assert_matches_spec(spec, registry, "getTable", response)


def test_list_tables_matches_spec(spec: dict[str, Any], registry: Registry, client: httpx.Client) -> None:
    response = client.get(f"/docs/{DOC}/tables", params={"limit": 2})

    assert "nextPageToken" in response.json()
    assert_matches_spec(spec, registry, "listTables", response)


@pytest.mark.parametrize("limit", [100, 5])
def test_list_columns_matches_spec(
    spec: dict[str, Any], registry: Registry, client: httpx.Client, limit: int
) -> None:
    response = client.get(f"/docs/{DOC}/tables/{TYPES}/columns", params={"limit": limit})

    assert_matches_spec(spec, registry, "listColumns", response)


def test_sample_columns_match_spec(
    spec: dict[str, Any], registry: Registry, emu: CodaEmulator, client: httpx.Client
) -> None:
    sample = emu.sample  # type: ignore[attr-defined]
    for table_id in (sample.deals_table_id, sample.contacts_table_id, sample.tasks_table_id):
        response = client.get(f"/docs/{sample.doc_id}/tables/{table_id}/columns", params={"limit": 100})
        assert_matches_spec(spec, registry, "listColumns", response)


def test_get_column_matches_spec(spec: dict[str, Any], registry: Registry, client: httpx.Client) -> None:
    response = client.get(f"/docs/{DOC}/tables/{TYPES}/columns/c-lookup")

    assert_matches_spec(spec, registry, "getColumn", response)


@pytest.mark.parametrize("token", ["tok-all", "tok-table"])
def test_whoami_matches_spec(
    spec: dict[str, Any], registry: Registry, plain: httpx.Client, token: str
) -> None:
    response = plain.get("/whoami", headers={"Authorization": f"Bearer {token}"})

    assert_matches_spec(spec, registry, "whoami", response)


def test_get_doc_matches_spec(spec: dict[str, Any], registry: Registry, client: httpx.Client) -> None:
    response = client.get(f"/docs/{DOC}")

    assert_matches_spec(spec, registry, "getDoc", response)


def test_list_docs_matches_spec(spec: dict[str, Any], registry: Registry, client: httpx.Client) -> None:
    response = client.get("/docs")

    assert len(response.json()["items"]) == 2
    assert_matches_spec(spec, registry, "listDocs", response)


ERROR_CASES = [
    ("listRows", 401, f"/docs/{DOC}/tables/{TYPES}/rows", "no-such-token", {}),
    ("whoami", 401, "/whoami", "no-such-token", {}),
    ("listRows", 403, f"/docs/{DOC}/tables/{PEOPLE}/rows", "tok-table", {}),
    ("getDoc", 403, f"/docs/{DOC}", "tok-table", {}),
    ("getTable", 404, f"/docs/{DOC}/tables/grid-missing", "tok-all", {}),
    ("listRows", 404, f"/docs/{DOC}/tables/grid-missing/rows", "tok-all", {}),
    (
        "listRows",
        400,
        f"/docs/{DOC}/tables/{TYPES}/rows",
        "tok-all",
        {"sortBy": "natural", "visibleOnly": "false"},
    ),
    ("listRows", 400, f"/docs/{DOC}/tables/{TYPES}/rows", "tok-all", {"pageToken": "expired"}),
]


@pytest.mark.parametrize(
    ("operation_id", "status", "path", "token", "params"),
    ERROR_CASES,
    ids=[f"{case[0]}-{case[1]}-{index}" for index, case in enumerate(ERROR_CASES)],
)
def test_error_bodies_match_spec(
    spec: dict[str, Any],
    registry: Registry,
    plain: httpx.Client,
    operation_id: str,
    status: int,
    path: str,
    token: str,
    params: dict[str, str],
) -> None:
    response = plain.get(path, params=params, headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == status
    assert_matches_spec(spec, registry, operation_id, response)


@pytest.mark.parametrize("operation_id", ["listRows", "whoami"])
def test_rate_limit_body_matches_spec(
    spec: dict[str, Any], registry: Registry, emu: CodaEmulator, client: httpx.Client, operation_id: str
) -> None:
    emu.inject(Fault(operation_id, 429))
    path = "/whoami" if operation_id == "whoami" else f"/docs/{DOC}/tables/{TYPES}/rows"

    response = client.get(path)

    assert response.status_code == 429
    assert_matches_spec(spec, registry, operation_id, response)


def spec_query_parameters(spec: dict[str, Any], operation_id: str) -> set[str]:
    _, operation = find_operation(spec, operation_id)
    names = set()
    for parameter in operation.get("parameters", []):
        if "$ref" in parameter:
            parameter = spec["components"]["parameters"][parameter["$ref"].rsplit("/", 1)[1]]
        if parameter["in"] == "query":
            names.add(parameter["name"])
    return names


def test_list_rows_parameters_exist_in_spec(spec: dict[str, Any]) -> None:
    assert spec_query_parameters(spec, "listRows") == LIST_ROWS_PARAMETERS


@pytest.mark.parametrize("operation_id", sorted(ACCEPTED_PARAMETERS))
def test_accepted_parameters_exist_in_spec(spec: dict[str, Any], operation_id: str) -> None:
    assert ACCEPTED_PARAMETERS[operation_id] <= spec_query_parameters(spec, operation_id)


GOOD_ROW = {
    "id": "i-1",
    "type": "row",
    "href": "http://127.0.0.1/apis/v1/docs/D/tables/grid-1/rows/i-1",
    "name": "n",
    "index": 1,
    "browserLink": "https://coda.io/d/_dD#_tugrid-1/_rui-1",
    "createdAt": "2024-01-01T00:00:00.000Z",
    "updatedAt": "2024-01-01T00:00:00.000Z",
    "values": {},
}
BAD_ROWS = {
    "missing-index": {key: value for key, value in GOOD_ROW.items() if key != "index"},
    "unknown-field": GOOD_ROW | {"parent": {}},
    "currency-without-amount": GOOD_ROW
    | {"values": {"c": {"@context": "http://schema.org/", "@type": "MonetaryAmount", "currency": "USD"}}},
    "person-extra-field": GOOD_ROW
    | {"values": {"c": {"@context": "http://schema.org/", "@type": "Person", "name": "x", "age": 3}}},
    "null-cell": GOOD_ROW | {"values": {"c": None}},
    "bad-timestamp": GOOD_ROW | {"createdAt": "yesterday"},
}


def test_repaired_spec_accepts_good_row(spec: dict[str, Any], registry: Registry) -> None:
    pointer = response_schema_pointer(spec, "listRows", 200)
    validator = OAS30Validator(
        {"$ref": f"{SPEC_URI}#{pointer}"}, registry=registry, format_checker=oas30_format_checker
    )

    assert list(validator.iter_errors({"items": [GOOD_ROW]})) == []


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_repaired_spec_still_rejects_bad_rows(spec: dict[str, Any], registry: Registry, case: str) -> None:
    # The repairs must not loosen the spec, so these rows, which break it, must still fail.
    pointer = response_schema_pointer(spec, "listRows", 200)
    validator = OAS30Validator(
        {"$ref": f"{SPEC_URI}#{pointer}"}, registry=registry, format_checker=oas30_format_checker
    )

    assert list(validator.iter_errors({"items": [BAD_ROWS[case]]})) != []
