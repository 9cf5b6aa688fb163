"""``python -m bench NAME [--quick]`` or ``python -m bench all --quick``.

Each benchmark is a module ``bench/<name>.py`` (dashes become underscores) with
``run(quick: bool) -> Iterable[dict]`` yielding result rows. This runner prints
one JSON object per row on stdout and nothing else; progress goes to stderr.
"""

import argparse
import importlib
import inspect
import json
import sys
import time

#: Benchmark names in the order ``all`` runs them.
BENCHES = ["hash", "import", "ed25519", "stream", "connect", "quic", "idle", "kad-sim", "kad",
           "add", "bitswap", "bitswap-multi", "gossip-sim", "gossip", "daemon", "hivemind",
           "lab-bitswap", "lab-kad", "natlab", "gateway", "load", "cli",
           "soak"]

FIELDS = ("bench", "metric", "value", "unit", "peer", "peer_value", "ratio")


def emit(row: dict) -> None:
    missing = [f for f in FIELDS if f not in row]
    if missing:
        raise ValueError(f"benchmark row lacks {missing}: {row}")
    print(json.dumps(row), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("name", help=f"one of {', '.join(BENCHES)}, or 'all'")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--security", choices=["noise", "tls"],
                        help="channel security of the TCP benchmarks that take it (stream)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="how long a timed benchmark runs (soak)")
    parser.add_argument("--series", default=None,
                        help="soak: write the whole sampled series to this JSON file")
    args = parser.parse_args(argv)
    names = BENCHES if args.name == "all" else [args.name]
    for name in names:
        if name not in BENCHES:
            parser.error(f"unknown benchmark {name!r}; known: {', '.join(BENCHES)}")
    for name in names:
        module = importlib.import_module(f"bench.{name.replace('-', '_')}")
        extra = {}
        if args.security is not None:
            if "security" not in inspect.signature(module.run).parameters:
                if args.name != "all":
                    parser.error(f"{name} does not take --security")
            else:
                extra["security"] = args.security
        for key in ("minutes", "series"):
            value = getattr(args, key)
            if value is not None:
                if key not in inspect.signature(module.run).parameters:
                    parser.error(f"{name} does not take --{key}")
                extra[key] = value
        start = time.perf_counter()
        for row in module.run(quick=args.quick, **extra):
            emit(row)
        print(f"[bench] {name} took {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
