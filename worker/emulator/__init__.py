"""An emulator of Coda's REST API v1 (read endpoints) for tests and demos.

It serves docs, tables, views, columns and rows from memory over real HTTP on 127.0.0.1, with
token scopes, silent page-size caps, opaque page tokens, the three value formats, a per-user
rate limit and injectable faults. See :class:`CodaEmulator` and :class:`Fault`.
"""

from __future__ import annotations

import logging

from worker.emulator.emulator import CodaEmulator
from worker.emulator.faults import Fault
from worker.emulator.model import Column
from worker.emulator.routes import ACCEPTED_PARAMETERS, LIST_ROWS_PARAMETERS
from worker.emulator.sample import SampleDoc, build_sample
from worker.emulator.server import RequestRecord
from worker.emulator.values import (
    CurrencyAmount,
    ImageRef,
    Markdown,
    PersonRef,
    RowRef,
    WebLink,
    currency,
    date_cell,
    datetime_cell,
    image,
    link,
    lookup,
    person,
    time_cell,
)

logger = logging.getLogger(__name__)

__all__ = [
    "ACCEPTED_PARAMETERS",
    "LIST_ROWS_PARAMETERS",
    "CodaEmulator",
    "Column",
    "CurrencyAmount",
    "Fault",
    "ImageRef",
    "Markdown",
    "PersonRef",
    "RequestRecord",
    "RowRef",
    "SampleDoc",
    "WebLink",
    "build_sample",
    "currency",
    "date_cell",
    "datetime_cell",
    "image",
    "link",
    "lookup",
    "person",
    "time_cell",
]
