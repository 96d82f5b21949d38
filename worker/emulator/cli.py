"""Command line of the emulator: serve a doc on 127.0.0.1 until interrupted."""

from __future__ import annotations

import argparse
import logging
import threading

from worker.emulator.emulator import CodaEmulator
from worker.emulator.sample import SampleDoc, build_sample

logger = logging.getLogger(__name__)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m worker.emulator",
        description="Serve an emulated Coda API v1 on 127.0.0.1 until Ctrl-C.",
    )
    parser.add_argument("--port", type=int, default=8765, help="TCP port to listen on (0 picks a free one)")
    parser.add_argument(
        "--seed",
        choices=("sample", "empty"),
        default="sample",
        help="content to serve: the sample CRM doc with its tokens, or nothing",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request at DEBUG level")
    return parser.parse_args(argv)


def describe(emu: CodaEmulator, sample: SampleDoc) -> str:
    """Return the text printed at start: URL, ids and the demo's bearer tokens."""
    return "\n".join(
        [
            f"Coda API emulator at {emu.base_url}",
            f"doc            {sample.doc_id}",
            f"Deals          {sample.deals_table_id}",
            f"Contacts       {sample.contacts_table_id}",
            f"Tasks          {sample.tasks_table_id}",
            f"Open deals     {sample.open_deals_view_id} (view of Deals)",
            "Demo tokens (fake, accepted only by this emulator):",
            f"  unrestricted (alice)       {sample.unrestricted_token}",
            f"  doc-restricted (alice)     {sample.doc_token}",
            f"  Contacts only (alice)      {sample.table_token}",
            f"  Tasks only (bob)           {sample.other_table_token}",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    emu = CodaEmulator(port=args.port)
    sample = build_sample(emu) if args.seed == "sample" else None

    with emu:
        print(describe(emu, sample) if sample else f"Coda API emulator at {emu.base_url} (empty)")
        print("Press Ctrl-C to stop.", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            print("Stopping.")
