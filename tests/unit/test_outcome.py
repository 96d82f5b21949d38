from __future__ import annotations

import pytest

from worker.outcome import Rejection, decide_deletes, explain_rejection
from worker.records import Identity

# Columns: existing, missing, read, row_count, max_fraction, allow_mass_delete, allowed, reason parts.
DELETE_CASES = [
    pytest.param(10, 0, 10, 10, 0.5, False, True, [], id="nothing-missing"),
    pytest.param(0, 0, 0, 0, 0.5, False, True, [], id="empty-table-empty-read"),
    pytest.param(
        10,
        10,
        0,
        None,
        0.5,
        False,
        False,
        ["no rows", "10 rows stored", "--allow-mass-delete"],
        id="empty-read",
    ),
    pytest.param(10, 10, 0, 0, 1.0, False, False, ["no rows"], id="empty-read-even-at-full-fraction"),
    pytest.param(
        10, 2, 8, 10, 0.5, False, False, ["read 8 rows", "rowCount 10", "2 deletes withheld"], id="short-read"
    ),
    pytest.param(10, 2, 12, 10, 0.5, False, True, [], id="read-above-row-count"),
    pytest.param(10, 2, 8, None, 0.5, False, True, [], id="row-count-unknown"),
    pytest.param(10, 6, 4, 4, 0.5, False, False, ["6 of 10", "60%", "limit of 50%"], id="above-fraction"),
    pytest.param(10, 4, 6, 6, 0.5, False, True, [], id="below-fraction"),
    pytest.param(10, 5, 5, 5, 0.5, False, True, [], id="exactly-at-fraction"),
    pytest.param(10, 1, 9, 9, 0.0, False, False, ["limit of 0%"], id="zero-fraction"),
    pytest.param(10, 9, 1, 1, 0.5, True, True, [], id="allow-overrides-fraction"),
    pytest.param(10, 10, 0, 0, 0.5, True, True, [], id="allow-overrides-empty-read"),
]


@pytest.mark.parametrize(
    ("existing", "missing", "read", "row_count", "max_fraction", "allow", "allowed", "reason_parts"),
    DELETE_CASES,
)
def test_decide_deletes_cases(
    existing: int,
    missing: int,
    read: int,
    row_count: int | None,
    max_fraction: float,
    allow: bool,
    allowed: bool,
    reason_parts: list[str],
) -> None:
    decision = decide_deletes(
        existing=existing,
        missing=missing,
        read=read,
        row_count=row_count,
        max_fraction=max_fraction,
        allow_mass_delete=allow,
    )

    assert decision.allowed is allowed
    if allowed:
        assert decision.reason is None
    else:
        assert decision.reason is not None
        missing_parts = [part for part in reason_parts if part not in decision.reason]
        assert missing_parts == []


# Rejections.

SCOPED = Identity(login_id="ann@example.com", name="Ann", scoped=True, token_name="deals-reader")
UNSCOPED = Identity(login_id="bob@example.com", name="Bob", scoped=False, token_name="everything")


def rejection(identity: Identity | None, whoami_status: int | None, status: int | None = 403) -> Rejection:
    return explain_rejection(
        job_name="deals",
        doc_id="AbCdEf",
        table_id="grid-xyz",
        status=status,
        operation="list rows",
        identity=identity,
        whoami_status=whoami_status,
    )


@pytest.mark.parametrize(
    ("identity", "whoami_status", "kind"),
    [
        pytest.param(None, 401, "token_invalid", id="whoami-401"),
        pytest.param(SCOPED, 200, "token_out_of_scope", id="scoped"),
        pytest.param(UNSCOPED, 200, "no_access", id="unscoped"),
        pytest.param(None, None, "token_rejected", id="whoami-unread"),
        pytest.param(None, 503, "token_rejected", id="whoami-503"),
    ],
)
def test_explain_rejection_kind(identity: Identity | None, whoami_status: int | None, kind: str) -> None:
    assert rejection(identity, whoami_status).kind == kind


@pytest.mark.parametrize(
    ("identity", "whoami_status"),
    [
        pytest.param(None, 401, id="whoami-401"),
        pytest.param(SCOPED, 200, id="scoped"),
        pytest.param(UNSCOPED, 200, id="unscoped"),
        pytest.param(None, None, id="whoami-unread"),
    ],
)
def test_explain_rejection_names_enable(identity: Identity | None, whoami_status: int | None) -> None:
    assert "`coda-sync enable deals`" in rejection(identity, whoami_status).reason


def test_explain_rejection_invalid_token() -> None:
    reason = rejection(None, 401, status=401).reason

    assert "401 on list rows of grid-xyz" in reason
    assert "invalid or was revoked" in reason


def test_explain_rejection_scoped_token() -> None:
    reason = rejection(SCOPED, 200).reason

    assert "table grid-xyz" in reason
    assert "doc AbCdEf" in reason
    assert "'deals-reader'" in reason
    assert "ann@example.com" in reason
    assert "restricted" in reason


def test_explain_rejection_no_access() -> None:
    reason = rejection(UNSCOPED, 200).reason

    assert "bob@example.com has no access to doc AbCdEf" in reason
    assert "Share the doc" in reason


def test_explain_rejection_unknown_status() -> None:
    reason = rejection(None, None, status=None).reason

    assert "refused on list rows of grid-xyz" in reason


def test_decide_deletes_short_read_despite_allow() -> None:
    decision = decide_deletes(
        existing=10, missing=2, read=8, row_count=10, max_fraction=0.5, allow_mass_delete=True
    )

    assert decision.allowed is False
