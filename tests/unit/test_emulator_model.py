"""The emulator's content operations, routing, scopes, rate limit and sample doc, without HTTP."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from worker.emulator import CodaEmulator, Column, Fault, build_sample
from worker.emulator.access import RateLimiter, scope_allows
from worker.emulator.listing import ApiError, parse_filter
from worker.emulator.model import ApiToken, Store
from worker.emulator.routes import parse_route
from worker.emulator.sample import DEAL_COUNT, EMPTY_DEAL

DOC = "FakeDoc01"
T1 = "grid-T1"
FIXED = dt.datetime(2024, 3, 1, 10, 0, tzinfo=dt.UTC)


@pytest.fixture
def emu() -> CodaEmulator:
    emulator = CodaEmulator(clock=lambda: FIXED)
    emulator.add_doc(DOC, name="Ops tracker")
    emulator.add_table(
        DOC,
        T1,
        name="Tasks",
        columns=[Column("c-name", "Name", "text", display=True), Column("c-qty", "Qty", "number")],
    )
    return emulator


def test_add_row_name_defaults_to_display_column(emu: CodaEmulator) -> None:
    emu.add_row(DOC, T1, {"c-name": "Alpha", "c-qty": 3}, row_id="i-r1")
    emu.add_row(DOC, T1, {"c-name": "Beta"}, row_id="i-r2", name="Custom")

    rows = emu.rows(DOC, T1)

    assert [row["name"] for row in rows] == ["Alpha", "Custom"]
    assert rows[1]["values"]["c-qty"] == ""


def test_add_row_generates_ids(emu: CodaEmulator) -> None:
    row_id = emu.add_row(DOC, T1, {"c-name": "Alpha"})

    assert row_id.startswith("i-")
    assert len(row_id) == 12


def test_add_row_rejects_unknown_columns(emu: CodaEmulator) -> None:
    with pytest.raises(ValueError, match="c-nope"):
        emu.add_row(DOC, T1, {"c-nope": 1})


def test_add_row_rejects_duplicate_id(emu: CodaEmulator) -> None:
    emu.add_row(DOC, T1, {"c-name": "Alpha"}, row_id="i-r1")

    with pytest.raises(ValueError, match="already exists"):
        emu.add_row(DOC, T1, {"c-name": "Again"}, row_id="i-r1")


def test_rows_of_a_view_cannot_be_changed(emu: CodaEmulator) -> None:
    emu.add_table(DOC, "table-V1", name="View", parent_table_id=T1)

    with pytest.raises(ValueError, match="view"):
        emu.add_row(DOC, "table-V1", {"c-name": "Alpha"})


def test_timestamps_from_strings(emu: CodaEmulator) -> None:
    emu.add_row(DOC, T1, {"c-name": "Alpha"}, row_id="i-r1", created_at="2024-03-01T10:01:00.123456Z")

    row = emu.rows(DOC, T1)[0]

    assert row["createdAt"] == "2024-03-01T10:01:00.123Z"
    assert row["updatedAt"] == "2024-03-01T10:01:00.123Z"


def test_update_row_merges_and_bumps_updated_at(emu: CodaEmulator) -> None:
    emu.add_row(DOC, T1, {"c-name": "Alpha", "c-qty": 3}, row_id="i-r1")
    before = emu.rows(DOC, T1)[0]

    emu.update_row(DOC, T1, "i-r1", {"c-qty": 8})
    after = emu.rows(DOC, T1)[0]

    assert after["values"] == {"c-name": "```Alpha```", "c-qty": 8}
    assert after["updatedAt"] > before["updatedAt"]
    assert after["createdAt"] == before["createdAt"]


def test_delete_row(emu: CodaEmulator) -> None:
    emu.add_row(DOC, T1, {"c-name": "Alpha"}, row_id="i-r1")
    emu.add_row(DOC, T1, {"c-name": "Beta"}, row_id="i-r2")

    emu.delete_row(DOC, T1, "i-r1")

    assert [row["id"] for row in emu.rows(DOC, T1)] == ["i-r2"]
    assert emu.rows(DOC, T1)[0]["index"] == 1
    with pytest.raises(KeyError, match="i-r1"):
        emu.delete_row(DOC, T1, "i-r1")


def test_reorder_rows_renumbers_index(emu: CodaEmulator) -> None:
    for number in (1, 2, 3):
        emu.add_row(DOC, T1, {"c-name": f"Row {number}"}, row_id=f"i-r{number}")

    emu.reorder_rows(DOC, T1, ["i-r3", "i-r1", "i-r2"])

    assert {row["id"]: row["index"] for row in emu.rows(DOC, T1)} == {"i-r1": 2, "i-r2": 3, "i-r3": 1}


def test_reorder_rows_needs_every_row_once(emu: CodaEmulator) -> None:
    emu.add_row(DOC, T1, {"c-name": "Alpha"}, row_id="i-r1")
    emu.add_row(DOC, T1, {"c-name": "Beta"}, row_id="i-r2")

    with pytest.raises(ValueError, match="each of its 2 rows"):
        emu.reorder_rows(DOC, T1, ["i-r1"])


def test_rename_table_keeps_id(emu: CodaEmulator) -> None:
    emu.rename_table(DOC, T1, "Tasks 2024")

    assert emu.table_payload(DOC, T1)["name"] == "Tasks 2024"
    assert emu.table_payload(DOC, T1)["id"] == T1


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        ([], "at least one column"),
        ([Column("c-a", "A", display=True), Column("c-b", "B", display=True)], "more than one display"),
        ([Column("c-a", "A"), Column("c-a", "A again")], "duplicate column ids"),
    ],
    ids=["no-columns", "two-display-columns", "duplicate-ids"],
)
def test_add_table_rejects_bad_columns(emu: CodaEmulator, columns: list[Column], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        emu.add_table(DOC, "grid-T9", name="Bad", columns=columns)


def test_add_view_needs_base_parent(emu: CodaEmulator) -> None:
    with pytest.raises(ValueError, match="parent_table_id"):
        emu.add_table(DOC, "table-V9", name="Orphan", table_type="view")


def test_column_rejects_unknown_type() -> None:
    with pytest.raises(ValueError, match="money"):
        Column("c-a", "A", "money")


def test_add_token_rejects_bad_scope(emu: CodaEmulator) -> None:
    with pytest.raises(ValueError, match="scope"):
        emu.add_token("tok", user="alice@example.test", scope=("table", DOC))


def test_revoke_unknown_token(emu: CodaEmulator) -> None:
    with pytest.raises(KeyError):
        emu.revoke_token("never-added")


@pytest.mark.parametrize(
    "arguments",
    [{"status": 99}, {"times": -1}, {"delay": -1.0}, {"action": "explode"}],
    ids=["status", "times", "delay", "action"],
)
def test_fault_rejects_bad_arguments(arguments: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Fault("listRows", **arguments)  # type: ignore[arg-type]


def test_store_clock_strictly_increases() -> None:
    store = Store(clock=lambda: FIXED)

    stamps = [store.now() for _ in range(3)]

    assert stamps == [FIXED, FIXED + dt.timedelta(milliseconds=1), FIXED + dt.timedelta(milliseconds=2)]


@pytest.mark.parametrize(
    ("path", "operation", "table", "item"),
    [
        ("/apis/v1/whoami", "whoami", None, None),
        ("/apis/v1/docs", "listDocs", None, None),
        ("/apis/v1/docs/D1/tables", "listTables", None, None),
        ("/apis/v1/docs/D1/tables/Tasks%202024%2FQ1/rows", "listRows", "Tasks 2024/Q1", None),
        ("/apis/v1/docs/D1/tables/grid-T1/rows/i-r1", "getRow", "grid-T1", "i-r1"),
        ("/apis/v1/docs/D1/tables/grid-T1/columns/c-a", "getColumn", "grid-T1", "c-a"),
    ],
)
def test_parse_route(path: str, operation: str, table: str | None, item: str | None) -> None:
    route = parse_route(path)

    assert route is not None
    assert route.operation == operation
    assert route.table == table
    assert route.item == item


@pytest.mark.parametrize(
    "path", ["/apis/v1beta1/docs", "/apis/v1/docs/D1/pages", "/apis/v1/whoami/x", "/apis/v1"]
)
def test_parse_route_unknown(path: str) -> None:
    assert parse_route(path) is None


def test_scope_allows_table_only_by_id() -> None:
    token = ApiToken("bob@example.test", "Bob", "t", ("table", "D1", "grid-T1"))

    def allowed(path: str) -> bool:
        route = parse_route(path)
        assert route is not None
        return scope_allows(token, route)

    assert allowed("/apis/v1/docs/D1/tables/grid-T1/rows")
    assert allowed("/apis/v1/whoami")
    assert not allowed("/apis/v1/docs/D1/tables/Tasks/rows")
    assert not allowed("/apis/v1/docs/D1/tables")
    assert not allowed("/apis/v1/docs/D2/tables/grid-T1/rows")


def test_rate_limiter_counts_per_user() -> None:
    limiter = RateLimiter()

    alice = [limiter.allow("alice", (2, 6.0), now) for now in (0.0, 1.0, 2.0, 6.5)]

    assert alice == [True, True, False, True]
    assert limiter.allow("bob", (2, 6.0), 2.0)
    assert limiter.allow("alice", None, 2.0)


def test_parse_filter_by_id_and_quoted_name() -> None:
    columns = [Column("c-name", "My Column")]

    assert parse_filter('c-name:"Apple"', columns) == ("c-name", "Apple")
    assert parse_filter('"My Column":123', columns) == ("c-name", 123)
    with pytest.raises(ApiError):
        parse_filter("My Column:123", columns)


def test_sample_builds_quickly_and_deterministically() -> None:
    started = time.perf_counter()
    first_emulator = CodaEmulator()
    first = build_sample(first_emulator)
    elapsed = time.perf_counter() - started
    second_emulator = CodaEmulator()
    second = build_sample(second_emulator)

    assert elapsed < 1.0
    assert first == second
    assert len(first.doc_id) == 10
    assert first_emulator.rows(first.doc_id, first.deals_table_id) == second_emulator.rows(
        second.doc_id, second.deals_table_id
    )


def test_sample_content() -> None:
    emu = CodaEmulator()
    sample = build_sample(emu)

    deals = emu.rows(sample.doc_id, sample.deals_table_id)
    columns = emu.store.columns(sample.doc_id, sample.deals_table_id)

    assert len(deals) == DEAL_COUNT
    assert len(emu.rows(sample.doc_id, sample.contacts_table_id)) == 50
    assert len(emu.rows(sample.doc_id, sample.tasks_table_id)) == 30
    assert [column.id for column in columns if column.hidden] == ["c-score"]
    assert all(value == "" for key, value in deals[EMPTY_DEAL]["values"].items() if key != "c-name")
    assert any("東京" in str(row["values"]["c-notes"]) for row in deals)
    assert any(row["values"]["c-summary"] == "**Urgent** call" for row in deals)
    rich_types = {
        value["@type"] for row in deals for value in row["values"].values() if isinstance(value, dict)
    }
    assert rich_types == {"MonetaryAmount", "Person", "StructuredValue", "WebPage", "ImageObject"}


def test_sample_tokens_have_expected_scopes() -> None:
    emu = CodaEmulator()
    sample = build_sample(emu)
    tokens = emu.store.tokens

    assert tokens[sample.unrestricted_token].scope is None
    assert tokens[sample.doc_token].scope == ("doc", sample.doc_id)
    assert tokens[sample.table_token].scope == ("table", sample.doc_id, sample.contacts_table_id)
    assert tokens[sample.other_table_token].scope == ("table", sample.doc_id, sample.tasks_table_id)
    assert tokens[sample.other_table_token].user == "bob@example.test"
