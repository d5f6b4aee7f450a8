"""`python -m bench.preload`: fill a hub database with N stored messages, fast, before a benchmark.

The rows are written by the engine (`Hub.preload_history`, hub/evidence/bulk.py: messages, deliveries
and their sealed timeline, as intake and delivery would have left them); this module gives it the
message to copy, a licence request signed once by REGISTRY (bench/messages.py), and shows progress.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

from hub.engine import Hub
from hub.errors import PreloadRefused


def preload(database_url: str, count: int, pki_dir: Path, *, tag: str | None = None,
            on_progress: Callable[[int], None] | None = None) -> dict:
    """Migrate the database, then store `count` messages with their deliveries and sealed timeline
    (`Hub.preload_history`); returns what was written and how long it took."""
    from bench import messages
    run_id = "TEMPLATE"
    data = messages.build(pki_dir, run_id, 1)[0]
    reference = messages.reference(run_id, 0)
    return Hub.preload_history(database_url, count, pki_dir=Path(pki_dir), message=data,
                               message_id=f"REGISTRY-{reference}", reference=reference, tag=tag,
                               on_progress=on_progress)


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    from bench.procs import progress_bar
    from hub.settings import Settings
    parser = argparse.ArgumentParser(prog="python -m bench.preload",
                                     description="Store N messages (with deliveries and a sealed timeline) in a "
                                                 "hub database in bulk, as a history for benchmarks.")
    parser.add_argument("--messages", "-n", type=int, required=True, metavar="N")
    parser.add_argument("--database-url", default=None,
                        help="the database (default $HUB_DATABASE_URL, as the hub would use)")
    parser.add_argument("--tag", default=None, help="the part of the message ids that marks this preload")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    url = args.database_url or settings.database_url
    console = Console()
    from hub.trust import pki
    pki.ensure_dev_pki(settings.pki_dir, ["hub", "REGISTRY"])
    with progress_bar(console) as progress:
        task = progress.add_task(f"preloading {args.messages} messages", total=args.messages)
        try:
            done = preload(url, args.messages, settings.pki_dir, tag=args.tag,
                           on_progress=lambda n: progress.update(task, completed=n))
        except PreloadRefused as exc:
            console.print(f"[red]{exc}[/]")
            return 2
    console.print(f"stored {done['messages']} messages and {done['events']} timeline events "
                  f"(chain head {done['chain_head']}) in {done['seconds']} s; ids carry -P{done['tag']}-")
    return 0


if __name__ == "__main__":
    sys.exit(main())
