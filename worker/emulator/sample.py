"""The demo doc: a small CRM with Deals (1,200 rows), Contacts, Tasks and an "Open deals" view.

Built from a fixed random seed, so ids, tokens and cells are the same on every run. Deals has a
column of every common type, Unicode and multi-line text, Markdown, one hidden column and a row
whose cells are all empty except its name.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import string
import unicodedata
import uuid
from dataclasses import dataclass
from typing import Any

from worker.emulator.emulator import CodaEmulator
from worker.emulator.model import Column
from worker.emulator.values import (
    Markdown,
    PersonRef,
    currency,
    date_cell,
    datetime_cell,
    image,
    link,
    lookup,
    person,
)

logger = logging.getLogger(__name__)

SEED = 20240301
DEAL_COUNT = 1200
CONTACT_COUNT = 50
TASK_COUNT = 30
# The row of Deals (0-based) whose cells are all empty except the display column.
EMPTY_DEAL = 4
DOC_UTC_OFFSET = "-04:00"
START = dt.datetime(2024, 1, 2, 9, 0, tzinfo=dt.UTC)

FIRST_NAMES = ("Ada", "Björn", "Chloé", "Dmitri", "Emeka", "Fatima", "Grace", "Hiro", "Inés", "José")
LAST_NAMES = ("Lovelace", "Ørsted", "Dubois", "Ivanov", "Okafor", "Haddad", "Hopper", "Tanaka", "Núñez")
COMPANIES = ("Acme, Inc.", "Globex", "Initech", "Umbrella", "Stark Industries", "Wayne Enterprises")
CITIES = ("Zürich", "東京", "São Paulo", "Kraków", "Montréal", "Reykjavík")
TAGS = ("Acme, Inc.", "VIP", "Renewal", "Upsell", "Partner")
STAGES = ("Lead", "Qualified", "Proposal", "Won", "Lost")
CURRENCIES = ("USD", "EUR", "GBP", "JPY", "BRL")


@dataclass(frozen=True)
class SampleDoc:
    """Ids and bearer tokens of the sample doc.

    ``unrestricted_token`` and ``doc_token`` (restricted to the doc) belong to Alice, as does
    ``table_token`` (restricted to Contacts). ``other_table_token`` is Bob's and restricted to
    Tasks, so using it on Deals shows a scope error.
    """

    doc_id: str
    deals_table_id: str
    contacts_table_id: str
    tasks_table_id: str
    open_deals_view_id: str
    unrestricted_token: str
    doc_token: str
    table_token: str
    other_table_token: str


def build_sample(emu: CodaEmulator) -> SampleDoc:
    """Add the sample doc and its four tokens to ``emu`` and return their ids."""
    rng = random.Random(SEED)
    doc_id = _random_id(rng, "", 10)
    deals, contacts, tasks = (_random_id(rng, "grid-") for _ in range(3))
    open_deals = _random_id(rng, "table-")
    emu.add_doc(
        doc_id, name="Sales CRM (sample)", owner="alice@example.test", owner_name="Alice", created_at=START
    )

    people = _add_contacts(emu, rng, doc_id, contacts)
    deal_rows = _add_deals(emu, rng, doc_id, deals, contacts, people)
    _add_tasks(emu, rng, doc_id, tasks, (deals, deal_rows), (contacts, people))
    emu.add_table(
        doc_id,
        open_deals,
        name="Open deals",
        parent_table_id=deals,
        created_at=START,
        view_filter=lambda values: values.get("c-won") is False,
    )

    return SampleDoc(
        doc_id=doc_id,
        deals_table_id=deals,
        contacts_table_id=contacts,
        tasks_table_id=tasks,
        open_deals_view_id=open_deals,
        unrestricted_token=emu.add_token(_token(rng), user="alice@example.test", name="Sync: everything"),
        doc_token=emu.add_token(
            _token(rng), user="alice@example.test", scope=("doc", doc_id), name="Sync: CRM doc"
        ),
        table_token=emu.add_token(
            _token(rng),
            user="alice@example.test",
            scope=("table", doc_id, contacts),
            name="Sync: Contacts",
        ),
        other_table_token=emu.add_token(
            _token(rng), user="bob@example.test", scope=("table", doc_id, tasks), name="Tasks only"
        ),
    )


def _random_id(rng: random.Random, prefix: str, length: int = 10) -> str:
    return prefix + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(length))


def _token(rng: random.Random) -> str:
    # Coda's tokens are UUIDs (bearerFormat in the spec).
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _add_contacts(
    emu: CodaEmulator, rng: random.Random, doc_id: str, table_id: str
) -> list[tuple[str, PersonRef]]:
    emu.add_table(
        doc_id,
        table_id,
        name="Contacts",
        created_at=START,
        columns=[
            Column("c-name", "Name", "text", display=True),
            Column("c-email", "Email", "email"),
            Column("c-company", "Company", "text"),
            Column("c-city", "City", "text"),
        ],
    )
    people = []
    for position in range(CONTACT_COUNT):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        ascii_first = unicodedata.normalize("NFKD", first).encode("ascii", "ignore").decode()
        email = f"{ascii_first.lower()}.{position}@example.test"
        values = {
            "c-name": f"{first} {last}",
            "c-email": email,
            "c-company": rng.choice(COMPANIES),
            "c-city": rng.choice(CITIES),
        }
        row_id = emu.add_row(
            doc_id,
            table_id,
            values,
            row_id=_random_id(rng, "i-"),
            created_at=START + dt.timedelta(hours=position),
        )
        people.append((row_id, person(f"{first} {last}", email)))
    return people


def _deal_columns(contacts_id: str) -> list[Column]:
    return [
        Column("c-name", "Deal", "text", display=True),
        Column("c-notes", "Notes", "text"),
        Column("c-summary", "Summary", "text"),
        Column("c-amount", "Amount", "currency"),
        Column("c-prob", "Probability", "percent"),
        Column("c-qty", "Seats", "number"),
        Column("c-close", "Close date", "date"),
        Column("c-contacted", "Last contact", "dateTime"),
        Column("c-won", "Won", "checkbox"),
        Column("c-stage", "Stage", "select", options=STAGES),
        Column("c-tags", "Tags", "select", is_array=True, options=TAGS),
        Column("c-owner", "Owner", "person", ref_table=contacts_id),
        Column("c-contact", "Contact", "lookup", ref_table=contacts_id),
        Column("c-site", "Website", "link"),
        Column("c-logo", "Logo", "image"),
        Column("c-score", "Internal score", "number", hidden=True),
    ]


def _add_deals(
    emu: CodaEmulator,
    rng: random.Random,
    doc_id: str,
    table_id: str,
    contacts_id: str,
    people: list[tuple[str, PersonRef]],
) -> list[tuple[str, str]]:
    """Add Deals and return the (row id, name) of each row."""
    emu.add_table(doc_id, table_id, name="Deals", created_at=START, columns=_deal_columns(contacts_id))
    deal_rows = []
    for position in range(DEAL_COUNT):
        name = f"{rng.choice(COMPANIES)} deal #{position + 1:04d}"
        values = {"c-name": name}
        if position != EMPTY_DEAL:
            values.update(_deal_cells(rng, doc_id, contacts_id, people, position))
        created = START + dt.timedelta(minutes=37 * position)
        row_id = emu.add_row(
            doc_id,
            table_id,
            values,
            row_id=_random_id(rng, "i-"),
            created_at=created,
            updated_at=created + dt.timedelta(minutes=rng.randint(0, 5000)),
        )
        deal_rows.append((row_id, name))
    return deal_rows


def _deal_cells(
    rng: random.Random,
    doc_id: str,
    contacts_id: str,
    people: list[tuple[str, PersonRef]],
    position: int,
) -> dict[str, Any]:
    contact_row, contact = rng.choice(people)
    owner = rng.choice(people)[1]
    close = dt.date(2024, 1, 1) + dt.timedelta(days=rng.randint(0, 700))
    cells: dict[str, Any] = {
        "c-notes": rng.choice(("Zürich – 東京 🚀", "Call back\nafter the board meeting", "", "OK")),
        "c-summary": Markdown("**Urgent** call") if position % 7 == 0 else f"Follow-up {position}",
        "c-amount": currency(rng.choice(CURRENCIES), round(rng.uniform(100, 250_000), 2)),
        "c-prob": round(rng.random(), 2),
        "c-qty": rng.randint(1, 500),
        "c-close": date_cell(close, DOC_UTC_OFFSET),
        "c-contacted": datetime_cell(START + dt.timedelta(minutes=rng.randint(0, 900_000))),
        "c-won": rng.random() < 0.3,
        "c-stage": rng.choice(STAGES),
        "c-tags": rng.sample(TAGS, rng.randint(0, 3)),
        "c-owner": owner,
        "c-contact": lookup(contact.name, doc_id=doc_id, table_id=contacts_id, row_id=contact_row),
        "c-site": link(f"https://deal-{position}.example.test/", f"Deal {position} site"),
        "c-logo": image(f"logo-{position}.png", f"https://img.example.test/logo-{position}.png", 64, 64),
        "c-score": rng.randint(0, 100),
    }
    # Leave roughly one cell in twenty empty, so clients meet "" in every column.
    for column_id in list(cells):
        if rng.random() < 0.05:
            cells[column_id] = ""
    return cells


def _add_tasks(
    emu: CodaEmulator,
    rng: random.Random,
    doc_id: str,
    table_id: str,
    deals: tuple[str, list[tuple[str, str]]],
    contacts: tuple[str, list[tuple[str, PersonRef]]],
) -> None:
    deals_id, deal_rows = deals
    contacts_id, people = contacts
    emu.add_table(
        doc_id,
        table_id,
        name="Tasks",
        created_at=START,
        columns=[
            Column("c-title", "Title", "text", display=True),
            Column("c-done", "Done", "checkbox"),
            Column("c-due", "Due", "date"),
            Column("c-assignee", "Assignee", "person", ref_table=contacts_id),
            Column("c-deal", "Deal", "lookup", ref_table=deals_id),
        ],
    )
    for position in range(TASK_COUNT):
        deal_row, deal_name = rng.choice(deal_rows)
        values = {
            "c-title": f"Task {position + 1}: {rng.choice(('Send quote', 'Call', 'Demo', 'Sign'))}",
            "c-done": rng.random() < 0.5,
            "c-due": date_cell(dt.date(2024, 6, 1) + dt.timedelta(days=position), DOC_UTC_OFFSET),
            "c-assignee": rng.choice(people)[1],
            "c-deal": lookup(deal_name, doc_id=doc_id, table_id=deals_id, row_id=deal_row),
        }
        emu.add_row(
            doc_id,
            table_id,
            values,
            row_id=_random_id(rng, "i-"),
            created_at=START + dt.timedelta(days=position),
        )
