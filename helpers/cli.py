"""`python -m helpers <command>`: the notebooks' steps from a terminal.

    check                      machine, GPU, chosen profile and library versions
    validate-data PATH         check a dataset file, folder or Hub id: a summary, or every problem as FILE:N
    train --run-dir DIR        fine-tune with DIR/config.json (the profile's defaults are written there if absent);
                               run it again after a crash and it resumes from the last complete checkpoint;
                               --method lora|qlora|full chooses what trains (07 compares them)
    dpo --run-dir DIR          preference tuning (DPO) on top of the run's SFT adapter, with the shipped preference pairs
                               or --data PATH; resumes like train; writes DIR/dpo/ (adapter, dpo_summary.json)
    evaluate --run-dir DIR     score the base model and the fine-tuned one on the test split; write metrics.json,
                               the chart and the side-by-side answers into DIR
    export --run-dir DIR --gguf [--quant q8_0|q4_k_m|f16]
                               merge the adapter, convert to GGUF with llama.cpp, quantize, write an Ollama Modelfile,
                               and compare the GGUF model's answers with the Hugging Face model's (needs .[export])
    chat --run-dir DIR         talk to the run's fine-tuned model in the terminal, replies streamed as they are made
    bench [--variants]         the course's training recipe against the common tutorial recipe: speed, memory, loss
    run-course [--run-dir DIR] execute every notebook in order, headless, and summarise the results
    robustness [--seeds 0,1,2,3,4]  fine-tune the tiny model with several seeds; min / median / max of the scores
    build-tiny-model [--out DIR]    rebuild the shipped tiny base model and say whether it matches bit for bit
    sync-notebooks             rewrite the notebooks' Colab badges and install cells from helpers/paths.py
"""

from __future__ import annotations

import argparse
import sys

from .bench import add_bench_arguments, cmd_bench
from .chat import add_chat_arguments, cmd_chat
from .config import METHODS
from .formats import FORMATS
from .robustness import DEFAULT_OUT as DEFAULT_ROBUSTNESS_OUT


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


def cmd_validate_data(args) -> int:
    from .config import make_config
    from .data import check_template_renders, dataset_reports
    from .formats import DataError, length_warning
    from .machine import detect_profile

    reports = list(dataset_reports(args.path, args.format, args.map).values())
    if all(r.ok for r in reports):
        cfg = make_config(args.profile or detect_profile())
        cfg.model.model_id = args.model or cfg.model.model_id
        max_length = args.max_length or cfg.train.max_length
        tokenizer = _tokenizer_or_none(cfg)
        for r in reports if tokenizer is not None else []:
            long = length_warning(r, tokenizer, max_length)
            r.warnings += [long] if long else []
            try:  # tool calls need a template that renders them: checked here, as when the data meets the model
                check_template_renders(tokenizer, r.rows)
            except DataError as e:
                r.problems.append(f"{r.source}: {e}")
        if tokenizer is None:
            print(f"note: token lengths not checked: the tokenizer of {cfg.model.model_id} could not be loaded")
        else:
            print(f"note: token lengths counted with the tokenizer of {cfg.model.model_id} against max_length "
                  f"{max_length} (--model and --max-length change them)")
    for r in reports:
        print(r.summary())
    return 0 if all(r.ok for r in reports) else 2


def _tokenizer_or_none(cfg):
    from .model import load_tokenizer

    try:
        return load_tokenizer(cfg)
    except (OSError, ValueError):  # offline, unknown id: the other checks still stand
        return None


def cmd_train(args) -> int:
    from .config import method_name, use_method
    from .rundir import open_run, save_config
    from .machine import process_state
    from .train import train_run

    state = process_state()  # under `accelerate launch` there are several processes: one writes, one reports
    with state.main_process_first():
        cfg, run = open_run(args.run_dir, profile=args.profile)
        for name in ("max_steps", "save_steps", "learning_rate"):  # command-line values go into the run's config
            if getattr(args, name) is not None:
                setattr(cfg.train, name, getattr(args, name))
        if args.method is not None:
            use_method(cfg, args.method)
        save_config(cfg, run)
    main = state.is_main_process
    if main:
        print(f"training run {run} (profile {cfg.profile}, model {cfg.model.model_id}, method {method_name(cfg)}, "
              f"learning rate {cfg.train.learning_rate:g})")
    summary = train_run(cfg, run)
    if main:
        print(f"done in {summary['train_runtime_s']:.0f}s, {summary['global_step']} steps on "
              f"{summary['num_processes']} process(es): eval loss {summary['eval_loss_before']:.3f} -> "
              f"{summary['eval_loss_after']:.3f}; {'adapter' if cfg.method != 'full' else 'whole model'} in "
              f"{run.finetuned_dir(cfg)}")
    return 0


def cmd_dpo(args) -> int:
    from dataclasses import replace

    from .dpo import dpo_run, dpo_settings, dpo_stage, preference_table
    from .rundir import open_run

    cfg, run = open_run(args.run_dir, profile=args.profile)
    settings = dpo_settings(cfg)
    for name in ("learning_rate", "beta", "save_steps"):
        if getattr(args, name) is not None:
            settings = replace(settings, **{name: getattr(args, name)})
    print(f"DPO on run {run} (profile {cfg.profile}, model {cfg.model.model_id}): learning rate "
          f"{settings.learning_rate:g}, beta {settings.beta:g}, {settings.num_train_epochs} epochs")
    summary = dpo_run(cfg, run, settings, args.data)
    print(preference_table(before=summary["before"], after=summary["after"]).to_string())
    print(f"{summary['global_step']} steps; DPO adapter in {dpo_stage(run).adapter_dir}")
    return 0


def cmd_evaluate(args) -> int:
    from .evaluation import evaluate_run
    from .rundir import open_run

    cfg, run = open_run(args.run_dir, profile=args.profile)
    print(f"evaluating run {run} (profile {cfg.profile}, model {cfg.model.model_id}): base vs fine-tuned")
    record = evaluate_run(cfg, run)
    b, f = record["base"], record["finetuned"]
    print(f"{'':<22}{'base':>10}{'fine-tuned':>12}")
    for key, name, fmt in (("eval_loss", "held-out loss", ".3f"), ("perplexity", "perplexity", ".1f"),
                           ("exact_match", "exact match", ".2f"), ("valid_format", "valid format", ".2f"),
                           ("rougeL", "ROUGE-L", ".2f"), ("bleu", "BLEU", ".1f")):
        if key in b:
            print(f"{name:<22}{b[key]:>10{fmt}}{f[key]:>12{fmt}}")
    for group, g in f.get("by_group", {}).items():
        print(f"{'  ' + group:<22}{b['by_group'][group]['exact_match']:>10.2f}{g['exact_match']:>12.2f}")
    print(f"training curves: {record['fit']['verdict']} ({record['fit']['evidence']})")
    if "task" in record["fit"]:
        print(f"  {record['fit']['task']}")
    print(f"saved {run.metrics_file}, {run.figure_path('base_vs_finetuned')} and {run.path / 'side_by_side.html'}")
    return 0


def cmd_export(args) -> int:
    from .export import ExportError, export_run
    from .rundir import open_run

    if not args.gguf:
        print("export writes GGUF files: add --gguf (and --quant q8_0, q4_k_m or f16)", file=sys.stderr)
        return 2
    cfg, run = open_run(args.run_dir, profile=args.profile)
    if not run.has_finetuned(cfg):
        print(f"no fine-tuned model in {run.finetuned_dir(cfg)}: train first, with `python -m helpers train --run-dir "
              f"{run.path}` (or notebook 04_training_sft)", file=sys.stderr)
        return 2
    try:
        report = export_run(cfg, run, quant=args.quant, limit=args.limit)
    except ExportError as e:
        print(f"export failed: {e}", file=sys.stderr)
        return 2
    meta = report["metadata"]
    print(f"wrote {run.path / 'export' / report['file']} ({report['size_mb']:.1f} MB) and "
          f"{run.path / 'export' / 'Modelfile'}")
    print("tensors stored as: " + ", ".join(f"{n} {t}" for t, n in report["tensor_types"].items()))
    print(f"inside the file: chat template {'yes' if meta['chat_template'] else 'NO'}, EOS {meta['eos']!r}, "
          f"generation ends at {', '.join(map(repr, meta['end_of_generation']))}")
    print(f"{report['n']} test prompts, greedy: GGUF and Hugging Face answers identical on {report['agreement']:.0%}; "
          f"exact match {report['hf_exact_match']:.2f} (HF) vs {report['gguf_exact_match']:.2f} (GGUF); "
          f"{report['stopped']:.0%} of GGUF answers ended by themselves ({report['hf_stopped']:.0%} of the HF ones)")
    n = report["n"]
    print(f"the file's chat template wrote {n - len(report['template_differs_on'])} of {n} prompts as transformers "
          f"does; llama.cpp split {n - len(report['tokens_differ_on'])} of {n} into the same tokens")
    for i, row in enumerate(report["rows"]):
        if "cause" in row:
            print(f"  prompt {i}: HF {row['hf']!r}\n            GGUF {row['gguf']!r}\n            {row['cause']}")
    if report["modelfile_differs_on"]:
        print(f"the Modelfile's TEMPLATE writes a different prompt on {len(report['modelfile_differs_on'])} "
              "conversations: check it against chat_template.jinja by hand")
    return 0 if report["stopped"] == 1 else 1


def cmd_run_course(args) -> int:
    from .course import run_course

    return run_course(args.run_dir, profile=args.profile, timeout=args.timeout)


def cmd_robustness(args) -> int:
    from .robustness import measure_robustness, spread_table

    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    print(f"fine-tuning the tiny model with seeds {', '.join(map(str, seeds))} (about a minute each on 2 cores)")
    record = measure_robustness(seeds, args.out, max_steps=args.max_steps)
    print(spread_table(record))
    print(f"saved {args.out}")
    for line in record["missed"]:
        print(f"target missed: {line}")
    return 1 if record["missed"] else 0


def cmd_build_tiny_model(args) -> int:
    import shutil
    import tempfile
    from pathlib import Path

    from .tiny import SHIPPED_DIR, TinyModelError, build_tiny_model, compare_with_shipped

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="tiny-rebuild-"))
    print(f"building the tiny base model into {out} (a few minutes on 2 CPU cores)")
    manifest = build_tiny_model(out)
    print(f"built in {manifest['built']['seconds']}s")
    try:
        diff = compare_with_shipped(out)
    except TinyModelError as e:
        diff = None
        print(f"no shipped model to compare with: {e}")
    if diff and diff["identical"]:
        print(f"bit for bit identical to the shipped model in {SHIPPED_DIR}")
    elif diff:
        print(f"differs from the shipped model: {', '.join(diff['files_that_differ'])}; largest weight difference "
              f"{diff['largest_weight_difference']:.3g}. Builds on different CPUs can differ; the course uses the "
              "shipped model, so this changes nothing unless you replace it (--replace).")
    if args.replace:
        shutil.rmtree(SHIPPED_DIR, ignore_errors=True)
        shutil.copytree(out, SHIPPED_DIR)
        print(f"replaced {SHIPPED_DIR}: measure it with `python -m helpers robustness` before committing it")
    return 0


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
    p = sub.add_parser("validate-data", help="check a dataset; exit 0 if valid, 2 with every problem listed")
    p.add_argument("path", help="a .jsonl, .json, .csv or .parquet file, a folder of split files, or a Hub dataset id")
    p.add_argument("--format", choices=("auto", *FORMATS),
                   default="auto", help="the record format (default: detected from the field names)")
    p.add_argument("--map", default="", help="rename fields first, e.g. question=instruction,answer=output")
    p.add_argument("--max-length", type=int, help="warn about examples longer than this (default: the profile's)")
    p.add_argument("--model", help="whose tokenizer counts the tokens (default: the profile's model)")
    p.add_argument("--profile", choices=["tiny", "t4", "ampere"], help="default: from the hardware")
    p.set_defaults(func=cmd_validate_data)
    p = sub.add_parser("train", help="fine-tune with the run directory's config")
    p.add_argument("--run-dir", required=True, help="the run directory (created if absent)")
    p.add_argument("--profile", choices=["tiny", "t4", "ampere"], help="preset for a new run (default: from the hardware)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    p.add_argument("--save-steps", type=int, help="write a checkpoint every N steps (a re-run resumes from the last)")
    p.add_argument("--method", choices=METHODS, help="what trains: lora (adapters), qlora (adapters on 4-bit weights) "
                   "or full (every weight; saves the whole model). Default: the run config's (the profile's: "
                   "lora, or qlora on a T4)")
    p.add_argument("--learning-rate", type=float, help="the optimizer's learning rate (full fine-tuning wants a "
                   "smaller one than LoRA: see notebook 07)")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("dpo", help="preference tuning (DPO) after SFT, on the run's adapter (notebook 08)")
    p.add_argument("--run-dir", required=True, help="a LoRA/QLoRA run directory (its SFT adapter is trained if absent)")
    p.add_argument("--profile", choices=["tiny", "t4", "ampere"], help="only for a run without config.json")
    p.add_argument("--data", help="preference pairs (file, folder of train/test files, or Hub id); default: the "
                   "course's data/preferences")
    p.add_argument("--learning-rate", type=float, help="DPO's learning rate (default: the profile's)")
    p.add_argument("--beta", type=float, help="how far from the SFT model DPO may move (default 0.1)")
    p.add_argument("--save-steps", type=int, help="write a checkpoint every N steps (a re-run resumes from the last)")
    p.set_defaults(func=cmd_dpo)
    p = sub.add_parser("evaluate", help="base vs fine-tuned on the test split; writes metrics.json")
    p.add_argument("--run-dir", required=True, help="a run directory with a trained adapter")
    p.add_argument("--profile", choices=["tiny", "t4", "ampere"], help="only for a run without config.json")
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser("chat", help="chat with the run's fine-tuned model in the terminal (streamed)")
    add_chat_arguments(p)
    p.set_defaults(func=cmd_chat)
    p = sub.add_parser("export", help="the fine-tuned model as GGUF (llama.cpp, Ollama), checked against the HF model")
    p.add_argument("--run-dir", required=True)
    p.add_argument("--gguf", action="store_true", help="convert to GGUF with llama.cpp's converter")
    p.add_argument("--quant", choices=["q8_0", "q4_k_m", "f16"], default="q8_0", help="default: q8_0")
    p.add_argument("--limit", type=int, help="compare on the first N test prompts only (default: all)")
    p.add_argument("--profile", choices=["tiny", "t4", "ampere"], help="only for a run without config.json")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("bench", help="the course recipe vs the common tutorial recipe: speed, memory, held-out loss")
    add_bench_arguments(p)
    p.set_defaults(func=cmd_bench)
    p = sub.add_parser("run-course", help="execute every notebook in order, headless")
    p.add_argument("--run-dir", help="the run directory (default: runs/<profile>)")
    p.add_argument("--profile", choices=["tiny", "t4", "ampere"], help="default: from the hardware")
    p.add_argument("--timeout", type=int, default=1800, help="seconds allowed per notebook cell")
    p.set_defaults(func=cmd_run_course)
    p = sub.add_parser("robustness", help="fine-tune the tiny model with several seeds: min / median / max")
    p.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated training seeds (default: 0,1,2,3,4)")
    p.add_argument("--out", default=str(DEFAULT_ROBUSTNESS_OUT), help="the JSON to write")
    p.add_argument("--max-steps", type=int, default=-1, help="cut each fine-tune short (only for a quick check)")
    p.set_defaults(func=cmd_robustness)
    p = sub.add_parser("build-tiny-model", help="rebuild the tiny base model and compare it with the shipped one")
    p.add_argument("--out", help="where to build it (default: a new temporary folder)")
    p.add_argument("--replace", action="store_true", help="then replace the shipped model in data/tiny_base")
    p.set_defaults(func=cmd_build_tiny_model)
    sub.add_parser("sync-notebooks", help="regenerate badges and install cells").set_defaults(func=cmd_sync_notebooks)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:  # our own errors carry the fix in their message
        print(f"error: {e}", file=sys.stderr)
        return 2
