"""Pure decisions about a run: how to handle deletes and how to explain a refused token."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from worker.records import Identity

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class DeleteDecision:
    """Whether a complete read may delete the rows it did not see, and why not."""

    allowed: bool
    reason: str | None = None


def decide_deletes(
    *,
    existing: int,
    missing: int,
    read: int,
    row_count: int | None,
    max_fraction: float,
    allow_mass_delete: bool,
) -> DeleteDecision:
    """Decide whether the rows missing from a complete read may be deleted.

    *existing* live rows are stored, *missing* of them were not in the read, which returned
    *read* distinct rows; *row_count* is the table's `rowCount` from Coda, when known.
    """
    if missing == 0:
        return DeleteDecision(allowed=True)
    empty_read = DeleteDecision(
        allowed=False,
        reason=(
            f"Coda returned no rows for a table that has {existing} rows stored; deletes "
            "withheld. If the table really was emptied, run `coda-sync sync "
            "--allow-mass-delete JOB` once"
        ),
    )
    # An incomplete read is never a reason to delete, not even for a job that allows mass
    # deletes: the rows it missed may all still exist.
    if row_count is not None and read < row_count:
        if read == 0:
            return empty_read
        return DeleteDecision(
            allowed=False,
            reason=(
                f"read {read} rows but Coda reports rowCount {row_count}, so the read may be "
                f"incomplete; {missing} deletes withheld until a read matches"
            ),
        )
    if allow_mass_delete:
        return DeleteDecision(allowed=True)
    if read == 0:
        return empty_read
    if existing > 0 and missing / existing > max_fraction:
        return DeleteDecision(
            allowed=False,
            reason=(
                f"the read would delete {missing} of {existing} stored rows "
                f"({missing / existing:.0%}, above the limit of {max_fraction:.0%}); deletes "
                "withheld. If this is expected, run `coda-sync sync --allow-mass-delete JOB` "
                "once or set allow_mass_delete = true for the job"
            ),
        )
    return DeleteDecision(allowed=True)


@dataclass(frozen=True, kw_only=True)
class Rejection:
    """Reason and kind of a rejected token, as stored in `job_status`."""

    kind: str
    reason: str


def explain_rejection(
    *,
    job_name: str,
    doc_id: str,
    table_id: str,
    status: int | None,
    operation: str,
    identity: Identity | None,
    whoami_status: int | None,
) -> Rejection:
    """Turn a 401/403 on the job's own table plus the `/whoami` response into a reason.

    `/whoami` answers for every live token, restricted or not, so a 401 there means the token
    itself is invalid or revoked; otherwise its `scoped` flag tells a restricted token that
    does not cover this table from a user who lacks access.
    """
    refused = f"{status or 'refused'} on {operation} of {table_id}"
    fix = (
        f"then update the token in the config (the job re-enables itself) or run "
        f"`coda-sync enable {job_name}`"
    )
    if whoami_status == 401:
        return Rejection(
            kind="token_invalid",
            reason=(
                f"auth: {refused}; /whoami also answered 401, so the token is invalid or was "
                f"revoked. Create a new API token in Coda's account settings, {fix}"
            ),
        )
    if identity is not None and identity.scoped:
        return Rejection(
            kind="token_out_of_scope",
            reason=(
                f"scope: {refused}; token {identity.token_name!r} of {identity.login_id} is "
                f"restricted and does not cover table {table_id} in doc {doc_id}. Create a "
                f"token restricted to this doc or table (or an unrestricted one), {fix}"
            ),
        )
    if identity is not None:
        return Rejection(
            kind="no_access",
            reason=(
                f"access: {refused}; the token is unrestricted, so its user "
                f"{identity.login_id} has no access to doc {doc_id}. Share the doc with that "
                f"user or use another user's token, {fix}"
            ),
        )
    return Rejection(
        kind="token_rejected",
        reason=(
            f"auth: {refused}; /whoami could not be read to tell a revoked token from a "
            f"restricted one. Check the token's scope and that it is still valid, {fix}"
        ),
    )


def friendly_operation(operation: str) -> str:
    """Name a Coda operation the way a status reason reads: 'rows', 'columns' or 'table'."""
    names = {"listRows": "rows", "listColumns": "columns", "getTable": "metadata"}
    return names.get(operation.strip(), operation.strip())


def public_url(url: str) -> str:
    """Return *url* without the user name and password a proxy URL may carry."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]))


def api_not_found_message(base_url: str) -> str:
    """Explain why a 404 from every configured job points at the base URL first."""
    return (
        f"every configured job answered 404 from {public_url(base_url)}. Most likely the API base URL or "
        "API version is wrong: set CODA_API_BASE_URL to https://coda.io/apis/v1 (or your proxy's "
        "equivalent). If the URL is right, check each job's doc_id and table_id"
    )
