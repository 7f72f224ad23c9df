"""`python -m helpers <command>`: the notebooks' steps from a terminal.

    check                      machine, GPU, chosen profile and library versions
    train --run-dir DIR        fine-tune with DIR/config.json (the profile's defaults are written there if absent)
    run-course [--run-dir DIR] execute every notebook in order, headless, and summarise the results
    sync-notebooks             rewrite the notebooks' Colab badges and install cells from helpers/paths.py
"""

from __future__ import annotations

import argparse
import sys


def cmd_check(args) -> int:
    from .machine import machine_report

    report = machine_report()
    gpu = report["gpu"]
    print(f"platform   {report['platform']}{'  (Google Colab)' if report['colab'] else ''}")
    if gpu:
        print(f"GPU        {gpu['name']}, {gpu['memory_gib']} GiB, compute capability {gpu['compute_capability']}, "
              f"bf16 {'native' if gpu['bf16'] else 'not supported: fp16 is used'}")
    else:
        print(f"GPU        none: CPU with {report['cpu_threads']} threads")
    forced = " (from COURSE_PROFILE)" if report["profile_forced"] else " (from the hardware)"
    print(f"profile    {report['profile']}{forced}")
    print(f"HF token   {'found' if report['hf_token_available'] else 'none (only needed for gated models)'}")
    for name, version in report["versions"].items():
        print(f"  {name:<13}{version}")
    missing = [n for n, v in report["versions"].items() if v == "missing" and n not in ("bitsandbytes",)]
    if missing:
        print(f"missing: {', '.join(missing)}; install with: pip install -r requirements.txt")
        return 1
    return 0


def cmd_train(args) -> int:
    from .rundir import open_run, save_config
    from .train import train_run

    cfg, run = open_run(args.run_dir, profile=args.profile)
    if args.max_steps is not None:
        cfg.train.max_steps = args.max_steps
        save_config(cfg, run)
    print(f"training run {run} (profile {cfg.profile}, model {cfg.model.model_id})")
    summary = train_run(cfg, run)
    print(f"done in {summary['train_runtime_s']:.0f}s, {summary['global_step']} steps: eval loss "
          f"{summary['eval_loss_before']:.3f} -> {summary['eval_loss_after']:.3f}; adapter in {run.adapter_dir}")
    return 0


def cmd_run_course(args) -> int:
    from .course import run_course

    return run_course(args.run_dir, profile=args.profile, timeout=args.timeout)


def cmd_sync_notebooks(args) -> int:
    from .notebook_tools import sync_notebooks

    changed = sync_notebooks()
    print("updated: " + (", ".join(p.name for p in changed) if changed else "nothing, all notebooks agree"))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="report the machine, the profile and library versions").set_defaults(func=cmd_check)
    p = sub.add_parser("train", help="fine-tune with the run directory's config")
    p.add_argument("--run-dir", required=True, help="the run directory (created if absent)")
    p.add_argument("--profile", choices=["tiny", "t4", "ampere"], help="preset for a new run (default: from the hardware)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("run-course", help="execute every notebook in order, headless")
    p.add_argument("--run-dir", help="the run directory (default: runs/<profile>)")
    p.add_argument("--profile", choices=["tiny", "t4", "ampere"], help="default: from the hardware")
    p.add_argument("--timeout", type=int, default=1800, help="seconds allowed per notebook cell")
    p.set_defaults(func=cmd_run_course)
    sub.add_parser("sync-notebooks", help="regenerate badges and install cells").set_defaults(func=cmd_sync_notebooks)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:  # our own errors carry the fix in their message
        print(f"error: {e}", file=sys.stderr)
        return 2
