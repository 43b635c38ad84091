"""Command-line interface: argparse subcommands over `slarm_bench.api`.

Nothing heavy is imported at module level, so `slarm-bench --help` is fast and imports neither torch nor
gsplat. Every subcommand converts arguments and calls one API function; errors derived from
SlarmBenchError are printed as one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from slarm_bench import __version__, train_options


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="raw dataset -> prepared sequences in the store",
                       description="Prepare a dataset into the store. Re-running skips finished sequences; "
                                   "--force rebuilds them.")
    p.add_argument("dataset", help="dataset name (see `slarm-bench list datasets`)")
    p.add_argument("--split", default=None, help="split to prepare (dataset default if omitted)")
    p.add_argument("--scenes", default=None,
                   help="comma-separated scene names, or N to take the first N scenes of the split")
    p.add_argument("--scene-list", default=None, help="file with one scene name per line")
    p.add_argument("--raw", default=None, help="folder of raw files (real datasets)")
    p.add_argument("--root", default=None, help="store root (default $SLARM_BENCH_DATA or ./data/prepared)")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes")
    p.add_argument("--force", action="store_true", help="rebuild sequences that already exist")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_prepare)


def _cmd_prepare(args: argparse.Namespace) -> int:
    from slarm_bench import api

    summary = api.prepare(args.dataset, split=args.split, scenes=args.scenes, scene_list=args.scene_list,
                          raw=args.raw, root=args.root, workers=args.workers, force=args.force,
                          progress=not args.quiet)
    print(summary.describe())
    return 0 if not summary.failed else 1


def _add_list(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list datasets, protocols and models")
    p.add_argument("what", nargs="?", choices=["datasets", "protocols", "models", "all"], default="all")
    p.set_defaults(func=_cmd_list)


def _cmd_list(args: argparse.Namespace) -> int:
    from slarm_bench import api

    for section, rows in api.list_everything(args.what).items():
        print(f"{section}:")
        for name, summary in rows:
            print(f"  {name:<18} {summary}")
    return 0


def _add_validate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check a prepared store: contract, checksums, schema version")
    p.add_argument("--root", default=None, help="store root (default $SLARM_BENCH_DATA or ./data/prepared)")
    p.add_argument("--dataset", default=None)
    p.add_argument("--split", default=None)
    p.add_argument("--quick", action="store_true", help="checksums only, no full decode")
    p.set_defaults(func=_cmd_validate)


def _cmd_validate(args: argparse.Namespace) -> int:
    from slarm_bench import api

    report = api.validate(root=args.root, dataset=args.dataset, split=args.split, deep=not args.quick)
    print(report.describe())
    return 0 if report.ok else 1


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="score a model preset on a protocol (resumes finished windows)",
                       description="Score a model on every window of a protocol. Results go to "
                                   "<results>/<protocol>/<preset>/<checkpoint>/; re-running resumes.")
    p.add_argument("--model", required=True, help="model preset (see `slarm-bench list models`)")
    p.add_argument("--protocol", default="synthetic-mini", help="protocol name (default synthetic-mini)")
    p.add_argument("--checkpoint", default=None, help="checkpoint file (safetensors, or a pickle with "
                   "--trust-pickle)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow loading a pickle checkpoint (runs code from the file: only for files you trust)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--backend", default="auto", choices=["auto", "gsplat", "torch"],
                   help="Gaussian renderer backend (auto: gsplat on CUDA when installed, else torch)")
    p.add_argument("--mode", default=None, choices=["batch", "stream"], help="override the protocol's mode")
    p.add_argument("--root", default=None, help="store root (default $SLARM_BENCH_DATA or ./data/prepared)")
    p.add_argument("--results", default=None, help="results root (default $SLARM_BENCH_RESULTS or ./results)")
    p.add_argument("--max-windows", type=int, default=None, help="score at most N new windows (smoke runs)")
    p.add_argument("--allow-missing", action="store_true",
                   help="score the scenes that are prepared; the result is marked incomplete")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    from slarm_bench import api

    result = api.run(args.model, args.protocol, checkpoint=args.checkpoint, device=args.device,
                     backend=args.backend, root=args.root, results=args.results, mode=args.mode,
                     max_windows=args.max_windows, allow_missing=args.allow_missing,
                     progress=not args.quiet, trust_pickle=args.trust_pickle, seed=args.seed)
    print(result.describe())
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="leaderboards (md, csv, tex, html, png) from result folders")
    p.add_argument("--protocol", default=None, help="only this protocol (default: every one with results)")
    p.add_argument("--results", default=None, help="results root (default $SLARM_BENCH_RESULTS or ./results)")
    p.add_argument("--out", default=None, help="output root (default ./leaderboards)")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    from slarm_bench import report

    summary = report.report(results_root=args.results, protocol=args.protocol, out_root=args.out)
    print(summary.describe())
    return 0


def _add_regress(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("regress", help="re-run models and compare with the committed leaderboard")
    p.add_argument("--protocol", default="synthetic-mini")
    p.add_argument("--models", default=None,
                   help="comma-separated presets (default: those listed in the committed leaderboard)")
    p.add_argument("--root", default=None, help="store root (default $SLARM_BENCH_DATA or ./data/prepared)")
    p.add_argument("--reference", default=None, help="leaderboard folder (default leaderboards/<protocol>)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_regress)


def _cmd_regress(args: argparse.Namespace) -> int:
    from slarm_bench import api

    outcome = api.regress(args.protocol, models=args.models, root=args.root, reference=args.reference,
                          device=args.device)
    print(outcome.describe())
    return 0 if outcome.ok else 1


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a reference model (storm-t, static-t, slarm-t, ...)",
                       description="Train a reference model on prepared data; resumes from the latest "
                                   "checkpoint in --out-dir. Runs under torchrun for DDP.")
    p.add_argument("--model", required=True, help="preset to train, e.g. storm-t, static-t, slarm-t")
    train_options.add_shared_arguments(p)
    p.add_argument("--root", default=None, help="store root (default $SLARM_BENCH_DATA or ./data/prepared)")
    p.add_argument("--workers", type=int, default=4, help="data-loader worker processes")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from slarm_bench import api_models

    result = api_models.train(args.model, **train_options.shared_values(args), data_root=args.root,
                              num_workers=args.workers)
    print(f"trained {args.model} to step {result['step']}: final loss {result['final_loss']:.4f}, "
          f"PSNR {result['final_psnr']:.2f} dB -> {result['export']} (sha256 {result['sha256'][:12]})")
    return 0


def _add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert-checkpoint", help="official STORM .pth -> safetensors + JSON config",
                       description="Convert an official STORM checkpoint (a pickle) to safetensors + JSON, "
                                   "so later runs need no pickle. Needs --trust-pickle.")
    p.add_argument("src", help="official checkpoint file (.pth)")
    p.add_argument("dst", help="output path stem: writes DST.safetensors and DST.json")
    p.add_argument("--preset", default="storm-b8")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow unpickling SRC (runs code from the file: only for files you trust)")
    p.set_defaults(func=_cmd_convert)


def _cmd_convert(args: argparse.Namespace) -> int:
    from slarm_bench import api_models

    out = api_models.convert_checkpoint(args.src, args.dst, preset=args.preset, trust_pickle=args.trust_pickle)
    print(" ".join(f"{k}={v}" for k, v in out.items()))
    return 0


def _add_query(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("query", help="open-vocabulary relevance map of a text for one window (PNG)")
    p.add_argument("--text", required=True, help='class or phrase, e.g. "vehicle"')
    p.add_argument("--model", default="slarm")
    p.add_argument("--protocol", default="synthetic-mini", help="its first window is rendered")
    p.add_argument("--out", default="query.png")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--clip-weights", default=None, help="open_clip ViT-B-32 text-tower weights file")
    p.add_argument("--root", default=None)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_cmd_query)


def _cmd_query(args: argparse.Namespace) -> int:
    from slarm_bench import api

    print(api.query(args.text, model=args.model, protocol=args.protocol, out=args.out,
                    checkpoint=args.checkpoint, clip_weights=args.clip_weights, root=args.root,
                    device=args.device))
    return 0


SUBCOMMANDS = [_add_prepare, _add_list, _add_validate, _add_run, _add_report, _add_regress, _add_train,
               _add_convert, _add_query]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slarm-bench",
        description="Benchmark suite for feed-forward reconstruction of dynamic driving scenes.")
    parser.add_argument("--version", action="version", version=f"slarm-bench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from slarm_bench.errors import SlarmBenchError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except SlarmBenchError as exc:
        print(f"slarm-bench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"slarm-bench {args.command}: interrupted; finished work is kept, re-run to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
