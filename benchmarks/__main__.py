"""``python -m benchmarks [--smoke] [--out DIR] [--only NAME ...]``: run, print, save."""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, Callable, Optional

from ._common import Config, Row, machine_facts
from .report import chart, evaluate_targets, table, write_json

BENCHMARKS = ("hot", "client", "flight", "startup", "mcp", "crypto", "fleet")
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _runners(config: Config, facts: dict[str, Any]) -> dict[str, Callable[[], list[Row]]]:
    def hot() -> list[Row]:
        from . import hot_path

        return hot_path.run(config)

    def client() -> list[Row]:
        from . import throughput

        rows, more = throughput.run(config)
        facts["throughput"] = more
        return rows

    def flight() -> list[Row]:
        from . import single_flight

        return single_flight.run(config)

    def startup() -> list[Row]:
        from . import startup as start

        return start.run(config, facts)

    def mcp() -> list[Row]:
        from . import mcp_server

        return mcp_server.run(config)

    def crypto() -> list[Row]:
        from . import encryption

        return encryption.run(config)

    def fleet() -> list[Row]:
        from . import fleet as many_hosts

        return many_hosts.run(config)

    return {
        "fleet": fleet,
        "hot": hot,
        "client": client,
        "flight": flight,
        "startup": startup,
        "mcp": mcp,
        "crypto": crypto,
    }


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a tiny run (seconds) through every path; speed is not judged",
    )
    parser.add_argument(
        "--short",
        action="store_true",
        help="fewer rounds and thread/process counts (about a minute); speed is judged",
    )
    parser.add_argument(
        "--out",
        default=None,
        help=f"folder for latest.json and chart.png (default {RESULTS}; "
        "with --smoke nothing is written unless --out is given)",
    )
    parser.add_argument(
        "--only", action="append", choices=BENCHMARKS, help="run only this benchmark (repeatable)"
    )
    args = parser.parse_args(argv)

    config = Config.tiny() if args.smoke else Config.short() if args.short else Config.full()
    out = args.out if args.out is not None else (None if args.smoke else RESULTS)
    facts: dict[str, Any] = {
        "schema": 1,
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:]),
        "mode": "smoke" if args.smoke else "short" if args.short else "full",
        "machine": machine_facts(),
        "config": asdict(config),
    }
    rows: list[Row] = []
    errors: dict[str, str] = {}
    durations: dict[str, float] = {}
    runners = _runners(config, facts)
    for name in args.only or BENCHMARKS:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            rows.extend(runners[name]())
        except Exception:
            errors[name] = traceback.format_exc()
            print(errors[name], file=sys.stderr)
        durations[name] = round(time.perf_counter() - start, 2)
    targets = evaluate_targets(rows, judge_speed=not config.smoke)
    facts["durations_s"] = durations
    facts["errors"] = errors
    print(table(rows, targets, facts))
    if out is not None:
        payload = {**facts, "targets": targets, "rows": [r.as_dict() for r in rows]}
        why = chart(
            rows,
            os.path.join(out, "chart.png"),
            f"textstack_sdk benchmarks — {facts['machine']['cpu_count']} CPUs, "
            f"Python {facts['machine']['python']}, {facts['generated']}"
            + (" (SMOKE: not a measurement)" if config.smoke else ""),
        )
        payload["chart"] = "chart.png" if why is None else f"not drawn: {why}"
        write_json(os.path.join(out, "latest.json"), payload)
        print(
            f"\nwrote {os.path.join(out, 'latest.json')}"
            + ("" if why else f" and {os.path.join(out, 'chart.png')}"),
            file=sys.stderr,
        )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
