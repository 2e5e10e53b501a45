"""The ``simgate`` command: serve, import, probe, and the admin commands.

Owns: argument parsing and exit codes. Subcommands import what they need lazily, so
``simgate --help`` stays fast.

Exit codes: 0 success (probe: accept), 1 probe reject or the admin API refused (4xx), 2 probe
no answer or a usage/config error, 3 start-up failure or admin API unreachable, 4 no such SIM
or group; ``bench`` exits with the failing benchmark's code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

DEFAULT_CONFIG = "config/simgate.toml"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command in ("sims", "lock", "groups", "events", "snapshot"):
        code: int = args.admin_run(args.run, args)
        return code
    result: int = args.run(args)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="simgate", description=__doc__.splitlines()[0])
    parser.set_defaults(command=None)
    commands = parser.add_subparsers(dest="command")

    serve = commands.add_parser("serve", help="run the RADIUS server and its HTTP endpoints")
    serve.add_argument("--config", default=DEFAULT_CONFIG, help="TOML file (%(default)s)")
    serve.set_defaults(run=_serve)

    load = commands.add_parser("import", help="build a snapshot from JSON Lines or CSV")
    load.add_argument("--config", default=DEFAULT_CONFIG, help="TOML file (%(default)s)")
    load.add_argument("data", type=Path, help="provisioning file (.jsonl or .csv)")
    load.set_defaults(run=_import)

    probe = commands.add_parser("probe", help="send one Access-Request like a test radio")
    probe.add_argument("imsi", help="3GPP-IMSI to send (15 digits)")
    probe.add_argument("imei", nargs="?", help="3GPP-IMEISV to send (14-16 digits); omit = none")
    probe.add_argument("--server", default="127.0.0.1", help="server address (%(default)s)")
    probe.add_argument("--port", type=int, default=1812, help="auth port (%(default)s)")
    probe.add_argument("--secret", default="simgate-demo-secret", help="shared secret")
    probe.add_argument("--tbcd", action="store_true", help="send the IMEI as 8 octets of TBCD")
    probe.add_argument("--user-name", help="User-Name (the CHAP group user name)")
    probe.add_argument("--chap-password", help="CHAP password (sends CHAP-Password)")
    probe.add_argument(
        "--no-message-authenticator",
        action="store_true",
        help="omit Message-Authenticator (a BlastRADIUS-unsafe client)",
    )
    probe.add_argument("--timeout", type=float, default=3.0, help="seconds per try")
    probe.add_argument("--attempts", type=int, default=3, help="tries (retransmissions + 1)")
    probe.add_argument("--json", action="store_true", help="print one JSON object")
    probe.set_defaults(run=_probe)

    bench = commands.add_parser(
        "bench",
        help="run the benchmarks (a source checkout's bench/)",
        description=(
            "Without a name: the hot path (micro), UDP peak and p99 at half of it (load --sweep "
            "--half), FreeRADIUS side by side when it is installed (peer), then the plots. With a "
            "name, that benchmark alone, with the arguments that follow (see its --help)."
        ),
    )
    bench.add_argument(
        "name", nargs="?", choices=BENCHMARKS, help="one benchmark (default: the standard set)"
    )
    bench.add_argument("arguments", nargs=argparse.REMAINDER, help="passed to the benchmark")
    bench.set_defaults(run=_bench)

    from core.admin.commands import add_commands, run

    add_commands(commands, DEFAULT_CONFIG)
    parser.set_defaults(admin_run=run)
    return parser


BENCHMARKS = ("micro", "load", "sizes", "peer", "writes", "spawn", "plots")


def _bench(args: argparse.Namespace) -> int:
    """Run bench/<name>.py with this interpreter; the standard set stops at the first failure."""
    import shutil
    import subprocess

    directory = Path(__file__).resolve().parents[1] / "bench"
    if not (directory / "micro.py").is_file():
        print(
            f"simgate: bench: no benchmarks at {directory}: they live in a source checkout "
            "(git clone, then pip install -e . or make bench)",
            file=sys.stderr,
        )
        return 2

    def run(name: str, *arguments: str) -> int:
        command = [sys.executable, str(directory / f"{name}.py"), *arguments]
        print(f"simgate bench: {' '.join(command[1:])}", flush=True)
        # the name is one of BENCHMARKS, the interpreter is this one: nothing untrusted runs
        return subprocess.run(command, cwd=directory.parent, check=False).returncode  # noqa: S603

    if args.name is not None:
        return run(args.name, *args.arguments)
    steps: list[tuple[str, ...]] = [
        ("micro",),
        ("load", "--sweep", "--half", "--seconds", "8", "--retries", "1", "--settle", "10"),
        ("sizes",),
    ]
    if shutil.which("freeradius") or Path("/usr/sbin/freeradius").exists():
        steps.append(("peer", "--rounds", "3", "--seconds", "8"))
    else:
        print("simgate bench: FreeRADIUS is not installed: no side by side (make bench-peer)")
    steps.append(("plots",))
    for step in steps:
        code = run(*step)
        if code != 0:
            return code
    return 0


def _serve(args: argparse.Namespace) -> int:
    import asyncio

    from core import app, config, logs

    try:
        settings = config.load(args.config)
    except config.ConfigError as error:
        print(f"simgate: config: {error}", file=sys.stderr)
        return 2
    logs.configure(settings.log.level, settings.log.format)
    try:
        import uvloop
    except ImportError:  # not on Linux: the stock loop with a 4 KiB receive size
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(app.run(settings))
    except app.StartupError as error:
        print(f"simgate: cannot start: {error}", file=sys.stderr)
        return 3
    return 0


def _import(args: argparse.Namespace) -> int:
    import time

    from core import config, provision

    try:
        settings = config.load(args.config)
    except config.ConfigError as error:
        print(f"simgate: config: {error}", file=sys.stderr)
        return 2
    bar = _ProgressBar()
    data_dir = Path(settings.store.data_dir)
    try:
        seq = _next_import_seq(data_dir)
    except Exception as error:  # noqa: BLE001 - the journal's error names the file and offset
        print(f"simgate: import: {data_dir}: the journal cannot be read: {error}", file=sys.stderr)
        return 2
    try:
        result = provision.import_file(
            args.data, data_dir, seq=seq, now=time.time(), progress=bar.update
        )
    except provision.ProvisionError as error:
        bar.finish()
        print(f"simgate: import: {args.data}: nothing written:\n{error}", file=sys.stderr)
        return 2
    bar.finish()
    print(
        f"imported {result.sim_count} SIMs ({result.imsi_count} IMSIs, {result.group_count} "
        f"groups) into {result.snapshot_path} in {result.seconds:.2f} s"
    )
    return 0


def _next_import_seq(data_dir: Path) -> int:
    """The sequence of an imported snapshot: after every snapshot and every journal record.

    An import replaces the table: the journal records before it are superseded, and the next
    start maps the new snapshot and replays nothing older.
    """
    from core.store.journal import read_journal
    from core.store.snapshot import list_snapshots

    newest = max((number for number, _ in list_snapshots(data_dir)), default=0)
    records, _ = read_journal(data_dir, newest, repair=False)
    return max(newest, records[-1][0] if records else newest) + 1


class _ProgressBar:
    """A one-line progress bar on stderr, drawn only on a terminal."""

    def __init__(self) -> None:
        self._tty = sys.stderr.isatty()
        self._drawn = False

    def update(self, done: int, total: int) -> None:
        if not self._tty or total <= 0:
            return
        filled = int(30 * done / total)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total}")
        sys.stderr.flush()
        self._drawn = True

    def finish(self) -> None:
        if self._drawn:
            sys.stderr.write("\n")


def _probe(args: argparse.Namespace) -> int:
    import json

    from core.probe import Request, probe
    from core.radius import dictionary

    handles = dictionary.load().handles
    request = Request(
        imsi=args.imsi,
        imei=args.imei,
        tbcd=args.tbcd,
        user_name=args.user_name,
        chap_password=args.chap_password,
        message_authenticator=not args.no_message_authenticator,
    )
    result = probe(
        request,
        (args.server, args.port),
        args.secret,
        handles,
        timeout=args.timeout,
        attempts=args.attempts,
    )
    milliseconds = result.seconds * 1000
    if args.json:
        print(
            json.dumps(
                {
                    "verdict": result.verdict,
                    "reason": result.reason,
                    "latencyMs": round(milliseconds, 3),
                    "attempts": result.attempts,
                }
            )
        )
    else:
        detail = f" reason={result.reason}" if result.reason else ""
        print(f"{result.verdict}{detail} latency={milliseconds:.2f}ms attempts={result.attempts}")
    return {"accept": 0, "reject": 1}.get(result.verdict, 2)


if __name__ == "__main__":
    sys.exit(main())
