"""The Coda API emulator over real HTTP: paging, scopes, formats, faults, rate limit and the log."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from worker.emulator import CodaEmulator, Column, Fault, Markdown, currency, person

DOC = "FakeDoc01"
T1 = "grid-T1"
T2 = "grid-T2"
VIEW = "table-V1"
ROWS = f"/docs/{DOC}/tables/{T1}/rows"
NATURAL_SORT_MESSAGE = (
    "Natural sorting is only available for visible rows. When using sortBy=natural, pass "
    "visibleOnly=true or omit the visibleOnly param which has the same effect.(The natural "
    "ordering of a table is only meaningfully defined for visible rows.)"
)

Get = Callable[..., httpx.Response]


@pytest.fixture
def emu() -> Iterator[CodaEmulator]:
    emulator = CodaEmulator()
    emulator.add_doc(DOC, name="Ops tracker")
    emulator.add_table(
        DOC,
        T1,
        name="Tasks",
        columns=[
            Column("c-name", "Name", "text", display=True),
            Column("c-qty", "Qty", "number"),
            Column("c-tags", "Tags", "select", is_array=True),
            Column("c-secret", "Secret", "text", hidden=True),
        ],
    )
    for number, (name, qty) in enumerate([("Alpha", 3), ("Beta", 5), ("Gamma", 7), ("Delta", 9)], start=1):
        emulator.add_row(
            DOC,
            T1,
            {"c-name": name, "c-qty": qty, "c-tags": ["Acme, Inc.", "VIP"], "c-secret": "s"},
            row_id=f"i-r{number}",
            created_at=f"2024-03-01T10:0{number}:00.000Z",
        )
    emulator.add_table(DOC, T2, name="Other", columns=[Column("c-x", "X", "text", display=True)])
    emulator.add_row(DOC, T2, {"c-x": "x"}, row_id="i-x1")
    emulator.add_table(
        DOC, VIEW, name="Big tasks", parent_table_id=T1, view_filter=lambda values: values["c-qty"] > 4
    )
    emulator.add_token("tok-all", user="alice@example.test")
    emulator.add_token("tok-doc", user="alice@example.test", scope=("doc", DOC))
    emulator.add_token("tok-t1", user="bob@example.test", scope=("table", DOC, T1))
    with emulator:
        yield emulator


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    # One client for the module: creating an httpx client costs about 20 ms (TLS setup), more
    # than most of these tests take.
    with httpx.Client(timeout=5) as client:
        yield client


@pytest.fixture
def get(emu: CodaEmulator, http: httpx.Client) -> Get:
    def send(path: str, token: str | None = "tok-all", **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return http.get(emu.base_url + path, params=params, headers=headers)

    return send


def add_rows(emu: CodaEmulator, table_id: str, count: int) -> None:
    emu.add_table(DOC, table_id, name=f"Big {table_id}", columns=[Column("c-n", "N", "number", display=True)])
    for number in range(count):
        emu.add_row(DOC, table_id, {"c-n": number})


def page_through(get: Get, path: str, **params: Any) -> list[dict[str, Any]]:
    """Follow nextPageToken to the end and return every page body."""
    pages = [get(path, **params).json()]
    while "nextPageToken" in pages[-1]:
        pages.append(get(path, pageToken=pages[-1]["nextPageToken"]).json())
    return pages


# -- paging ---------------------------------------------------------------------------------


def test_list_rows_caps_limit_silently(emu: CodaEmulator, get: Get) -> None:
    add_rows(emu, "grid-Big", 450)

    first = get(f"/docs/{DOC}/tables/grid-Big/rows", limit=500)
    body = first.json()

    assert first.status_code == 200
    assert len(body["items"]) == 200
    assert "nextPageToken" in body
    assert body["nextPageLink"].endswith("?pageToken=" + body["nextPageToken"])


def test_list_rows_pages_reach_every_row_once(emu: CodaEmulator, get: Get) -> None:
    add_rows(emu, "grid-Big", 450)

    pages = page_through(get, f"/docs/{DOC}/tables/grid-Big/rows", limit=500)
    ids = [row["id"] for page in pages for row in page["items"]]

    assert [len(page["items"]) for page in pages] == [200, 200, 50]
    assert len(set(ids)) == 450
    assert "nextPageToken" not in pages[-1]
    assert "nextPageLink" not in pages[-1]


def test_list_rows_last_page_has_no_token(get: Get) -> None:
    pages = page_through(get, ROWS, limit=2)

    assert [[row["id"] for row in page["items"]] for page in pages] == [["i-r1", "i-r2"], ["i-r3", "i-r4"]]
    assert "nextPageToken" not in pages[1]


def test_list_rows_exact_fit_has_no_token(get: Get) -> None:
    body = get(ROWS, limit=4).json()

    assert len(body["items"]) == 4
    assert "nextPageToken" not in body


def test_row_page_cap_is_configurable(emu: CodaEmulator, get: Get) -> None:
    emu.row_page_cap = 3

    assert len(get(ROWS, limit=100).json()["items"]) == 3


def test_page_token_ignores_other_parameters(get: Get) -> None:
    token = get(ROWS, limit=2, valueFormat="rich").json()["nextPageToken"]

    body = get(ROWS, pageToken=token, valueFormat="simple", limit=1).json()

    assert [row["id"] for row in body["items"]] == ["i-r3", "i-r4"]
    assert body["items"][0]["values"]["c-name"] == "```Gamma```"


def test_page_tokens_are_opaque(get: Get) -> None:
    first = get(ROWS, limit=2).json()["nextPageToken"]
    second = get(ROWS, limit=2).json()["nextPageToken"]

    assert first != second
    assert len(first) >= 20
    for hint in (DOC, T1, "offset", "limit"):
        assert hint not in first


def test_page_token_reusable_for_retries(get: Get) -> None:
    token = get(ROWS, limit=2).json()["nextPageToken"]

    assert get(ROWS, pageToken=token).json()["items"] == get(ROWS, pageToken=token).json()["items"]


def test_expired_page_token_rejected(emu: CodaEmulator, get: Get) -> None:
    token = get(ROWS, limit=2).json()["nextPageToken"]
    emu.expire_page_tokens()

    response = get(ROWS, pageToken=token)

    assert response.status_code == 400
    assert response.json() == {
        "statusCode": 400,
        "statusMessage": "Bad Request",
        "message": "Invalid page token",
    }
    assert get(ROWS, limit=2).status_code == 200


def test_unknown_page_token_rejected(get: Get) -> None:
    assert get(ROWS, pageToken="made-up").status_code == 400


def test_page_token_bound_to_its_table(get: Get) -> None:
    token = get(ROWS, limit=2).json()["nextPageToken"]

    assert get(f"/docs/{DOC}/tables/{T2}/rows", pageToken=token).status_code == 400
    assert get(f"/docs/{DOC}/tables/{T1}/columns", pageToken=token).status_code == 400


def test_rows_added_during_paging(emu: CodaEmulator, get: Get) -> None:
    token = get(ROWS, limit=2).json()["nextPageToken"]
    emu.add_row(DOC, T1, {"c-name": "Epsilon", "c-qty": 1}, row_id="i-r5")

    body = get(ROWS, pageToken=token).json()

    assert [row["id"] for row in body["items"]] == ["i-r3", "i-r4"]
    assert [row["id"] for row in get(ROWS, pageToken=body["nextPageToken"]).json()["items"]] == ["i-r5"]


def test_list_columns_caps_limit(emu: CodaEmulator, get: Get) -> None:
    emu.column_page_cap = 2
    path = f"/docs/{DOC}/tables/{T1}/columns"

    pages = page_through(get, path, limit=100)

    assert [[column["id"] for column in page["items"]] for page in pages] == [
        ["c-name", "c-qty"],
        ["c-tags", "c-secret"],
    ]


def test_list_columns_default_limit_and_visible_only(get: Get) -> None:
    path = f"/docs/{DOC}/tables/{T1}/columns"

    all_columns = [column["id"] for column in get(path).json()["items"]]
    visible = [column["id"] for column in get(path, visibleOnly="true").json()["items"]]

    assert all_columns == ["c-name", "c-qty", "c-tags", "c-secret"]
    assert visible == ["c-name", "c-qty", "c-tags"]


def test_list_columns_marks_display_column(get: Get) -> None:
    items = get(f"/docs/{DOC}/tables/{T1}/columns").json()["items"]

    assert items[0]["display"] is True
    assert "display" not in items[1]
    assert items[2]["format"] == {"type": "select", "isArray": True}


def test_list_tables_pages_and_filters(get: Get) -> None:
    pages = page_through(get, f"/docs/{DOC}/tables", limit=2)
    views = get(f"/docs/{DOC}/tables", tableTypes="view").json()["items"]

    assert [table["id"] for page in pages for table in page["items"]] == [T1, T2, VIEW]
    assert [view["id"] for view in views] == [VIEW]
    assert get(f"/docs/{DOC}/tables", tableTypes="chart").status_code == 400


# -- scopes and tokens ----------------------------------------------------------------------

ENDPOINTS = {
    "listDocs": "/docs",
    "getDoc": f"/docs/{DOC}",
    "listTables": f"/docs/{DOC}/tables",
    "getTable": f"/docs/{DOC}/tables/{T1}",
    "listColumns": f"/docs/{DOC}/tables/{T1}/columns",
    "listRows": ROWS,
    "getRow": f"{ROWS}/i-r1",
    "whoami": "/whoami",
    "otherTableRows": f"/docs/{DOC}/tables/{T2}/rows",
    "tableByName": f"/docs/{DOC}/tables/Tasks/rows",
}
ALLOWED = {
    "tok-all": set(ENDPOINTS),
    "tok-doc": set(ENDPOINTS) - {"listDocs"},
    "tok-t1": {"getTable", "listColumns", "listRows", "getRow", "whoami"},
}
SCOPE_CASES = [(token, endpoint) for token in ALLOWED for endpoint in ENDPOINTS]


@pytest.mark.parametrize(("token", "endpoint"), SCOPE_CASES, ids=[f"{t}-{e}" for t, e in SCOPE_CASES])
def test_scope_matrix(get: Get, token: str, endpoint: str) -> None:
    response = get(ENDPOINTS[endpoint], token=token)

    if endpoint in ALLOWED[token]:
        assert response.status_code == 200
    else:
        assert response.status_code == 403
        assert response.json() == {"statusCode": 403, "statusMessage": "Forbidden", "message": "Forbidden"}


@pytest.mark.parametrize(("token", "endpoint"), SCOPE_CASES, ids=[f"{t}-{e}" for t, e in SCOPE_CASES])
def test_scope_matrix_legacy_401(emu: CodaEmulator, get: Get, token: str, endpoint: str) -> None:
    emu.legacy_401 = True

    response = get(ENDPOINTS[endpoint], token=token)

    expected = 200 if endpoint in ALLOWED[token] else 401
    assert response.status_code == expected
    if expected == 401:
        assert response.json()["statusMessage"] == "Unauthorized"


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_revoked_token_gets_401_everywhere(emu: CodaEmulator, get: Get, endpoint: str) -> None:
    emu.revoke_token("tok-t1")

    response = get(ENDPOINTS[endpoint], token="tok-t1")

    assert response.status_code == 401
    assert response.json() == {"statusCode": 401, "statusMessage": "Unauthorized", "message": "Unauthorized"}


@pytest.mark.parametrize("token", [None, "no-such-token"], ids=["missing", "unknown"])
def test_bad_credentials_get_401(get: Get, token: str | None) -> None:
    assert get("/whoami", token=token).status_code == 401
    assert get(ROWS, token=token).status_code == 401


def test_whoami_reports_scoped_flag(get: Get) -> None:
    unrestricted = get("/whoami", token="tok-all").json()
    restricted = get("/whoami", token="tok-t1").json()

    assert unrestricted["scoped"] is False
    assert unrestricted["loginId"] == "alice@example.test"
    assert restricted["scoped"] is True
    assert restricted["loginId"] == "bob@example.test"
    assert restricted["type"] == "user"
    assert restricted["workspace"]["type"] == "workspace"


# -- row listing parameters -----------------------------------------------------------------


def test_natural_sort_with_visible_only_false_is_400(get: Get) -> None:
    response = get(ROWS, sortBy="natural", visibleOnly="false")

    assert response.status_code == 400
    assert response.json() == {
        "statusCode": 400,
        "statusMessage": "Bad Request",
        "message": NATURAL_SORT_MESSAGE,
    }


def test_natural_sort_drops_hidden_rows(emu: CodaEmulator, get: Get) -> None:
    emu.hide_row(DOC, T1, "i-r2")

    natural = get(ROWS, sortBy="natural").json()["items"]
    default = get(ROWS).json()["items"]

    assert [row["id"] for row in natural] == ["i-r1", "i-r3", "i-r4"]
    assert "c-secret" not in natural[0]["values"]
    assert [row["id"] for row in default] == ["i-r1", "i-r2", "i-r3", "i-r4"]


def test_visible_only_drops_hidden_rows_and_columns(emu: CodaEmulator, get: Get) -> None:
    emu.hide_row(DOC, T1, "i-r3")

    visible = get(ROWS, visibleOnly="true").json()["items"]
    everything = get(ROWS, visibleOnly="false").json()["items"]

    assert [row["id"] for row in visible] == ["i-r1", "i-r2", "i-r4"]
    assert set(visible[0]["values"]) == {"c-name", "c-qty", "c-tags"}
    assert len(everything) == 4
    assert everything[0]["values"]["c-secret"] == "s"


def test_reorder_changes_natural_order_and_index(emu: CodaEmulator, get: Get) -> None:
    emu.reorder_rows(DOC, T1, ["i-r3", "i-r1", "i-r2", "i-r4"])

    natural = get(ROWS, sortBy="natural").json()["items"]
    default = get(ROWS).json()["items"]

    assert [(row["id"], row["index"]) for row in natural] == [
        ("i-r3", 1),
        ("i-r1", 2),
        ("i-r2", 3),
        ("i-r4", 4),
    ]
    assert [row["id"] for row in default] == ["i-r1", "i-r2", "i-r3", "i-r4"]


def test_sort_by_updated_at(emu: CodaEmulator, get: Get) -> None:
    emu.update_row(DOC, T1, "i-r1", {"c-qty": 8})

    items = get(ROWS, sortBy="updatedAt").json()["items"]

    assert [row["id"] for row in items][-1] == "i-r1"
    assert items[-1]["values"]["c-qty"] == 8


def test_value_formats_over_http(get: Get) -> None:
    simple = get(ROWS, limit=1).json()["items"][0]["values"]
    arrays = get(ROWS, limit=1, valueFormat="simpleWithArrays").json()["items"][0]["values"]
    rich = get(ROWS, limit=1, valueFormat="rich").json()["items"][0]["values"]

    assert simple == {"c-name": "Alpha", "c-qty": 3, "c-tags": "Acme, Inc., VIP", "c-secret": "s"}
    assert arrays["c-tags"] == ["Acme, Inc.", "VIP"]
    assert rich["c-name"] == "```Alpha```"


def test_use_column_names(get: Get) -> None:
    values = get(ROWS, limit=1, useColumnNames="true").json()["items"][0]["values"]

    assert set(values) == {"Name", "Qty", "Tags", "Secret"}


@pytest.mark.parametrize("query", ['c-name:"Beta"', '"Name":"Beta"', "c-qty:5"])
def test_query_filter(get: Get, query: str) -> None:
    items = get(ROWS, query=query).json()["items"]

    assert [row["id"] for row in items] == ["i-r2"]


def test_query_filter_matches_array_items(get: Get) -> None:
    assert len(get(ROWS, query='c-tags:"VIP"').json()["items"]) == 4


@pytest.mark.parametrize("query", ["c-name", "c-name:Beta", 'c-nope:"x"', '"Name:"x"'])
def test_invalid_query_is_400(get: Get, query: str) -> None:
    assert get(ROWS, query=query).status_code == 400


@pytest.mark.parametrize(
    "params",
    [{"limit": "0"}, {"limit": "many"}, {"valueFormat": "html"}, {"sortBy": "name"}, {"visibleOnly": "yes"}],
    ids=["limit-zero", "limit-text", "value-format", "sort-by", "visible-only"],
)
def test_invalid_parameter_values_are_400(get: Get, params: dict[str, str]) -> None:
    assert get(ROWS, **params).status_code == 400


def test_unknown_parameter_is_400(get: Get) -> None:
    response = get(ROWS, pageSize="10")

    assert response.status_code == 400
    assert "pageSize" in response.json()["message"]


def test_sync_token_reports_changes_but_not_deletions(emu: CodaEmulator, get: Get) -> None:
    sync_token = page_through(get, ROWS, limit=3)[-1]["nextSyncToken"]
    emu.update_row(DOC, T1, "i-r3", {"c-qty": 8})
    emu.delete_row(DOC, T1, "i-r2")
    emu.add_row(DOC, T1, {"c-name": "Epsilon", "c-qty": 1}, row_id="i-r5")

    delta = get(ROWS, syncToken=sync_token).json()

    assert [row["id"] for row in delta["items"]] == ["i-r3", "i-r5"]
    assert "nextSyncToken" in delta
    assert get(ROWS, syncToken=delta["nextSyncToken"]).json()["items"] == []


def test_invalid_sync_token_is_400(get: Get) -> None:
    response = get(ROWS, syncToken="NOT_A_TOKEN")

    assert response.status_code == 400
    assert response.json()["message"] == "Invalid pageToken."


# -- tables, views, rows and errors ---------------------------------------------------------


def test_get_table_by_url_encoded_name(emu: CodaEmulator, get: Get) -> None:
    emu.rename_table(DOC, T1, "Tasks 2024/Q1")

    by_name = get(f"/docs/{DOC}/tables/Tasks%202024%2FQ1")

    assert by_name.status_code == 200
    assert by_name.json()["id"] == T1
    assert get(f"/docs/{DOC}/tables/Tasks").status_code == 404


def test_get_table_fields(get: Get) -> None:
    table = get(f"/docs/{DOC}/tables/{T1}").json()

    assert table["tableType"] == "table"
    assert table["rowCount"] == 4
    assert table["displayColumn"]["id"] == "c-name"
    assert "parentTable" not in table


def test_view_lists_filtered_rows_of_parent(get: Get) -> None:
    view = get(f"/docs/{DOC}/tables/{VIEW}").json()
    items = get(f"/docs/{DOC}/tables/{VIEW}/rows").json()["items"]

    assert view["tableType"] == "view"
    assert view["parentTable"]["id"] == T1
    assert view["rowCount"] == 3
    assert [row["id"] for row in items] == ["i-r2", "i-r3", "i-r4"]


def test_get_row_has_parent(get: Get) -> None:
    row = get(f"{ROWS}/i-r2", valueFormat="rich").json()

    assert row["parent"]["id"] == T1
    assert row["values"]["c-name"] == "```Beta```"
    assert row["browserLink"] == f"https://coda.io/d/_d{DOC}#_tu{T1}/_rui-r2"


def test_get_row_by_name(get: Get) -> None:
    assert get(f"{ROWS}/Gamma").json()["id"] == "i-r3"


@pytest.mark.parametrize(
    "path",
    [
        f"/docs/NoSuchDoc/tables/{T1}/rows",
        f"/docs/{DOC}/tables/grid-nope/rows",
        f"{ROWS}/i-nope",
        f"/docs/{DOC}/pages",
    ],
    ids=["doc", "table", "row", "unknown-endpoint"],
)
def test_not_found_is_json_404(get: Get, path: str) -> None:
    response = get(path)

    assert response.status_code == 404
    assert set(response.json()) == {"statusCode", "statusMessage", "message"}
    assert response.json()["statusMessage"] == "Not Found"


def test_retired_base_path_is_404(emu: CodaEmulator) -> None:
    response = httpx.get(
        f"{emu.origin}/apis/v1beta1/docs/{DOC}/tables/{T1}/rows", headers={"Authorization": "Bearer tok-all"}
    )

    assert response.status_code == 404


def test_write_methods_are_405(emu: CodaEmulator) -> None:
    response = httpx.post(
        f"{emu.base_url}{ROWS}", json={"rows": []}, headers={"Authorization": "Bearer tok-all"}
    )

    assert response.status_code == 405


@pytest.mark.parametrize("status", [400, 403, 503])
def test_oversize_doc_rejects_list_rows(emu: CodaEmulator, get: Get, status: int) -> None:
    emu.oversize_status = status
    emu.set_over_api_size_limit(DOC)

    response = get(ROWS)

    assert response.status_code == status
    assert response.json()["message"] == "Doc is too large for API access"
    assert get(f"/docs/{DOC}").json()["docSize"]["overApiSizeLimit"] is True


def test_doc_size_override(emu: CodaEmulator, get: Get) -> None:
    emu.add_doc("BigDoc0001", size_override={"totalRowCount": 412000}, over_api_size_limit=True)

    size = get("/docs/BigDoc0001").json()["docSize"]

    assert size["totalRowCount"] == 412000
    assert size["overApiSizeLimit"] is True


def test_doc_version_header(emu: CodaEmulator, emu_client: httpx.Client) -> None:
    latest = {"X-Coda-Doc-Version": "latest"}

    fresh = emu_client.get(ROWS, headers=latest)
    emu.set_doc_stale(DOC)
    stale = emu_client.get(ROWS, headers=latest)
    other = emu_client.get(ROWS, headers={"X-Coda-Doc-Version": "v1"})

    assert fresh.status_code == 200
    assert stale.status_code == 400
    assert stale.json()["message"] == "Doc is not yet up to date."
    assert other.status_code == 400


@pytest.fixture
def emu_client(emu: CodaEmulator) -> Iterator[httpx.Client]:
    headers = {"Authorization": "Bearer tok-all", "User-Agent": "coda-sync-tests/1.0"}
    with httpx.Client(base_url=emu.base_url, headers=headers, timeout=5) as client:
        yield client


def test_emulator_rows_match_rich_listing(emu: CodaEmulator, get: Get) -> None:
    assert emu.rows(DOC, T1) == get(ROWS, valueFormat="rich").json()["items"]


def test_row_name_follows_display_column(emu: CodaEmulator, get: Get) -> None:
    emu.update_row(DOC, T1, "i-r1", {"c-name": Markdown("**Alpha** prime")})

    assert get(f"{ROWS}/i-r1").json()["name"] == "Alpha prime"


# -- headers and the request log ------------------------------------------------------------


def test_success_headers_have_no_rate_limit_hints(get: Get) -> None:
    response = get(ROWS)

    assert response.headers["content-type"].startswith("application/json")
    assert "retry-after" not in response.headers
    assert not [name for name in response.headers if "ratelimit" in name.lower()]


def test_request_log_never_holds_the_token(emu: CodaEmulator, emu_client: httpx.Client) -> None:
    emu_client.get(ROWS, params={"limit": 2})
    emu_client.get("/whoami")

    records = emu.requests

    assert len(records) == 2
    assert "tok-all" not in repr(records)
    assert all("authorization" not in record.headers for record in records)
    assert records[0].headers["user-agent"] == "coda-sync-tests/1.0"
    assert records[0].user == "alice@example.test"
    assert records[0].query == {"limit": "2"}
    assert records[0].path == f"/apis/v1{ROWS}"
    assert records[0].status == 200


def test_request_log_clear(emu: CodaEmulator, get: Get) -> None:
    get("/whoami")
    emu.clear_requests()

    assert emu.requests == []


# -- faults ---------------------------------------------------------------------------------


def test_fault_429_with_retry_after_on_second_page(emu: CodaEmulator, get: Get) -> None:
    emu.inject(Fault("listRows", 429, headers={"Retry-After": "3"}, when_page_token=True))

    first = get(ROWS, limit=2).json()
    limited = get(ROWS, pageToken=first["nextPageToken"])
    retried = get(ROWS, pageToken=first["nextPageToken"])

    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "3"
    assert limited.json() == {
        "statusCode": 429,
        "statusMessage": "Too Many Requests",
        "message": "Too Many Requests",
    }
    assert retried.status_code == 200
    assert [row["id"] for row in retried.json()["items"]] == ["i-r3", "i-r4"]


def test_fault_429_without_retry_after(emu: CodaEmulator, get: Get) -> None:
    emu.inject(Fault("listRows", 429, times=2))

    statuses = [get(ROWS).status_code for _ in range(3)]

    assert statuses == [429, 429, 200]
    assert "retry-after" not in get(ROWS).headers


def test_fault_forever(emu: CodaEmulator, get: Get) -> None:
    emu.inject(Fault("listRows", 503, times=None))

    assert [get(ROWS).status_code for _ in range(4)] == [503] * 4
    assert get("/whoami").status_code == 200


def test_fault_html_body(emu: CodaEmulator, get: Get) -> None:
    page = "<html><body><h1>403 Forbidden</h1></body></html>"
    emu.inject(Fault("getTable", 403, body=page, content_type="text/html; charset=utf-8"))

    response = get(f"/docs/{DOC}/tables/{T1}")

    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == page


def test_fault_truncated_json(emu: CodaEmulator, get: Get) -> None:
    emu.inject(Fault("listRows", 200, body='{"items":[{"id":"i-r1",'))

    response = get(ROWS)

    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_fault_delay_times_out_client(emu: CodaEmulator) -> None:
    emu.inject(Fault("listRows", delay=1.0))
    headers = {"Authorization": "Bearer tok-all"}

    with httpx.Client(base_url=emu.base_url, headers=headers, timeout=0.2) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.get(ROWS)
    with httpx.Client(base_url=emu.base_url, headers=headers, timeout=5) as client:
        assert client.get(ROWS).status_code == 200


def test_fault_drop_connection(emu: CodaEmulator, get: Get) -> None:
    emu.inject(Fault("whoami", action="drop_connection"))

    with pytest.raises(httpx.RemoteProtocolError):
        get("/whoami")
    assert get("/whoami").status_code == 200
    assert emu.requests[0].status == 0


def test_fault_repeat_page_token(emu: CodaEmulator, get: Get) -> None:
    token = get(ROWS, limit=2).json()["nextPageToken"]
    emu.inject(Fault("listRows", action="repeat_page_token", times=3))

    repeated = [get(ROWS, pageToken=token).json() for _ in range(3)]
    after = get(ROWS, pageToken=token).json()

    assert [body["nextPageToken"] for body in repeated] == [token] * 3
    assert [row["id"] for row in repeated[0]["items"]] == ["i-r3", "i-r4"]
    assert "nextPageToken" not in after


def test_fault_repeat_page_token_skips_first_page(emu: CodaEmulator, get: Get) -> None:
    emu.inject(Fault("listRows", action="repeat_page_token"))

    first = get(ROWS, limit=2).json()

    assert len(emu.faults) == 1
    assert get(ROWS, pageToken=first["nextPageToken"]).json()["nextPageToken"] == first["nextPageToken"]


def test_fault_empty_page_with_token(emu: CodaEmulator, get: Get) -> None:
    emu.inject(Fault("listRows", action="empty_page_with_token"))

    empty = get(ROWS, limit=2).json()
    resumed = get(ROWS, pageToken=empty["nextPageToken"]).json()

    assert empty["items"] == []
    assert [row["id"] for row in resumed["items"]] == ["i-r1", "i-r2"]


def test_fault_reject_page_token(emu: CodaEmulator, get: Get) -> None:
    emu.inject(Fault("listRows", action="reject_page_token"))

    first = get(ROWS, limit=2)
    rejected = get(ROWS, pageToken=first.json()["nextPageToken"])

    assert first.status_code == 200
    assert rejected.status_code == 400
    assert rejected.json()["message"] == "Invalid page token"


def test_fault_path_regex(emu: CodaEmulator, get: Get) -> None:
    emu.inject(Fault(rf"/tables/{T2}/", 500, times=None))

    assert get(f"/docs/{DOC}/tables/{T2}/rows").status_code == 500
    assert get(ROWS).status_code == 200


def test_fault_on_retired_base_path_regex(emu: CodaEmulator) -> None:
    emu.inject(Fault(r"^/apis/v1beta1/", 404, body="Not Found", content_type="text/plain", times=None))

    response = httpx.get(f"{emu.origin}/apis/v1beta1/docs")

    assert response.status_code == 404
    assert response.text == "Not Found"


def test_faults_match_in_order(emu: CodaEmulator, get: Get) -> None:
    emu.inject(Fault("listRows", 500))
    emu.inject(Fault("any", 502))

    assert [get(ROWS).status_code for _ in range(3)] == [500, 502, 200]


def test_fault_applies_before_auth(emu: CodaEmulator, get: Get) -> None:
    emu.inject(Fault("listRows", 503))

    assert get(ROWS, token="no-such-token").status_code == 503


def test_invalid_fault_action() -> None:
    with pytest.raises(ValueError, match="action"):
        Fault("listRows", action="explode")


# -- rate limit -----------------------------------------------------------------------------


def test_rate_limit_is_shared_by_a_users_tokens(emu: CodaEmulator, get: Get) -> None:
    emu.rate_limit = (3, 60.0)

    alice = [
        get("/whoami", token=token).status_code for token in ("tok-all", "tok-doc", "tok-all", "tok-doc")
    ]
    bob = get("/whoami", token="tok-t1")

    assert alice == [200, 200, 200, 429]
    assert bob.status_code == 200


def test_rate_limit_body_and_retry_after(emu: CodaEmulator, get: Get) -> None:
    emu.rate_limit = (1, 60.0)
    get(ROWS)

    without_header = get(ROWS)
    emu.rate_limit_retry_after = "3"
    with_header = get(ROWS)

    assert without_header.status_code == 429
    assert "retry-after" not in without_header.headers
    assert without_header.json()["statusMessage"] == "Too Many Requests"
    assert with_header.headers["retry-after"] == "3"


def test_rate_limit_window_slides(emu: CodaEmulator, get: Get) -> None:
    emu.rate_limit = (2, 0.3)

    burst = [get("/whoami").status_code for _ in range(3)]
    time.sleep(0.35)

    assert burst == [200, 200, 429]
    assert get("/whoami").status_code == 200


# -- lifecycle ------------------------------------------------------------------------------


def test_stop_closes_open_connections(emu: CodaEmulator, emu_client: httpx.Client) -> None:
    assert emu_client.get("/whoami").status_code == 200

    emu.stop()

    with pytest.raises(httpx.TransportError):
        emu_client.get("/whoami")


def test_stop_does_not_wait_for_delayed_replies(emu: CodaEmulator) -> None:
    emu.inject(Fault("whoami", delay=30))
    headers = {"Authorization": "Bearer tok-all"}
    with httpx.Client(base_url=emu.base_url, headers=headers, timeout=0.1) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.get("/whoami")

    started = time.monotonic()
    emu.stop()

    assert time.monotonic() - started < 2


def test_emulator_binds_only_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        CodaEmulator(host="0.0.0.0")


def test_currency_and_person_cells_round_trip(emu: CodaEmulator, get: Get) -> None:
    emu.add_table(
        DOC,
        "grid-T3",
        name="Money",
        columns=[Column("c-price", "Price", "currency"), Column("c-owner", "Owner", "person")],
    )
    emu.add_row(
        DOC,
        "grid-T3",
        {"c-price": currency("USD", 1234.5), "c-owner": person("Ada Example", "ada@example.test")},
    )

    simple = get(f"/docs/{DOC}/tables/grid-T3/rows").json()["items"][0]
    rich = get(f"/docs/{DOC}/tables/grid-T3/rows", valueFormat="rich").json()["items"][0]["values"]

    assert simple["values"] == {"c-price": "$1,234.50", "c-owner": "Ada Example"}
    assert simple["name"] == "$1,234.50"
    assert rich["c-price"]["amount"] == 1234.5
    assert rich["c-owner"]["email"] == "ada@example.test"
