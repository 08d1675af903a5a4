"""`taxoclip eval zeroshot|fewshot|suite|hierarchy|ablation`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import add_device_argument, add_model_argument

TASK_HELP = """A task is a CSV/Parquet table with a path column and either a `class` column or rank columns
(kingdom ... species). Give it with --metadata (and --images, --rank, ...), or take one from a
suite file with --suite FILE --task NAME."""


def register(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="zero-shot, few-shot, suites, hierarchy, ablations",
                                   description="Evaluate models: zero-shot and few-shot classification, benchmark "
                                               "suites, how well the embedding space follows the tree of life, and "
                                               "text-type ablations.")
    sub = parser.add_subparsers(dest="eval_command", metavar="ACTION")

    zeroshot = sub.add_parser("zeroshot", help="zero-shot top-1/top-5, per-class and per-rank accuracy",
                              description=TASK_HELP)
    _task_arguments(zeroshot)
    _model_arguments(zeroshot)
    zeroshot.add_argument("--text", nargs="+", metavar="TYPE",
                          help="text type(s): asis, sci, com, taxon, sci_com, taxon_com (default: the task's)")
    zeroshot.add_argument("--templates", default="bioclip", choices=("bioclip", "openai"),
                          help="bioclip: the paper's 81 prompts; openai: the 80 of inference tools (default: %(default)s)")
    zeroshot.add_argument("--output", help="folder for summary, per-class, per-rank and prediction tables")
    zeroshot.set_defaults(func=run_zeroshot)

    fewshot = sub.add_parser("fewshot", help="CL2N nearest centroid and linear probe, k-shot, seeded trials",
                             description=TASK_HELP)
    _task_arguments(fewshot)
    _model_arguments(fewshot)
    fewshot.add_argument("--shots", type=int, nargs="+", default=[1, 5], metavar="K", help="default: 1 5")
    fewshot.add_argument("--trials", type=int, default=5)
    fewshot.add_argument("--seed", type=int, default=0)
    fewshot.add_argument("--supports", metavar="FILE", help="rerun exactly the trials of a saved supports file")
    fewshot.add_argument("--methods", default="cl2n,linear_probe", help="comma list (default: %(default)s)")
    fewshot.add_argument("--probe-c", type=float, default=1.0, help="inverse regularisation of the linear probe")
    fewshot.add_argument("--output", help="folder for supports.json, trials.csv and summary.csv")
    fewshot.set_defaults(func=run_fewshot)

    suite = sub.add_parser("suite", help="run every model of a suite YAML on every task; tables and bar charts")
    suite.add_argument("suite", help="suite YAML (see configs/suites/)")
    suite.add_argument("--output", required=True, help="output folder (reruns resume in it)")
    suite.add_argument("--model", action="append", metavar="[NAME=]SPEC", help="replace the suite's models (repeatable)")
    suite.add_argument("--data-root", help="folder the task paths are relative to (overrides the suite's data_root)")
    suite.add_argument("--tasks", help="comma list of task names to run (default: all)")
    suite.add_argument("--overwrite", action="store_true", help="redo runs that already finished")
    _run_options(suite)
    suite.set_defaults(func=run_suite)

    hierarchy = sub.add_parser("hierarchy", help="t-SNE drill-down figure; per-rank kNN agreement and silhouette",
                               description=TASK_HELP)
    _task_arguments(hierarchy)
    hierarchy.add_argument("--model", action="append", metavar="[NAME=]SPEC",
                           help="model(s) to compare (repeatable; default: bioclip)")
    _run_options(hierarchy)
    hierarchy.add_argument("--k", type=int, default=10, help="neighbours for kNN agreement (default: %(default)s)")
    hierarchy.add_argument("--no-figure", action="store_true", help="numbers only, no t-SNE")
    hierarchy.add_argument("--max-points", type=int, default=3000, help="t-SNE points per panel (default: %(default)s)")
    hierarchy.add_argument("--seed", type=int, default=0)
    hierarchy.add_argument("--output", required=True, help="folder for hierarchy.csv/.md and the PNGs")
    hierarchy.set_defaults(func=run_hierarchy)

    ablation = sub.add_parser("ablation", help="checkpoints x test-time text types: the paper's comparison table",
                              description=TASK_HELP + " With --suite and no --task, every task of the suite is used.")
    _task_arguments(ablation)
    ablation.add_argument("--model", action="append", required=True, metavar="[NAME=]SPEC",
                          help="checkpoint to compare (repeatable), e.g. mixed=runs/mixed")
    ablation.add_argument("--texts", default="com,sci,taxon,sci_com,taxon_com", help="test-time text types")
    ablation.add_argument("--shots", type=int, nargs="*", default=[1, 5], metavar="K",
                          help="few-shot columns (default: 1 5; none to skip)")
    ablation.add_argument("--trials", type=int, default=5)
    ablation.add_argument("--seed", type=int, default=0)
    ablation.add_argument("--templates", default="bioclip", choices=("bioclip", "openai"))
    ablation.add_argument("--output", required=True)
    _run_options(ablation)
    ablation.set_defaults(func=run_ablation)

    parser.set_defaults(func=lambda args: parser.print_help() or 0)


def _task_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("task")
    group.add_argument("--metadata", help="CSV/Parquet table of the images")
    group.add_argument("--images", help="folder the paths are relative to (default: the table's folder)")
    group.add_argument("--name", help="task name (default: the table's file name)")
    group.add_argument("--path-column", default="filepath")
    group.add_argument("--label-column", help="label column (default: class, if the table has one)")
    group.add_argument("--rank", help="classify at this rank from the rank columns (kingdom ... species)")
    group.add_argument("--filter", action="append", default=[], metavar="COLUMN=V1,V2",
                       help="keep rows whose COLUMN is one of the values (repeatable)")
    group.add_argument("--min-images", type=int, default=1, help="drop classes with fewer images")
    group.add_argument("--suite", help="take the task from this suite YAML ...")
    group.add_argument("--task", help="... by name")
    group.add_argument("--data-root", help="folder the suite's task paths are relative to")


def _run_options(parser: argparse.ArgumentParser) -> None:
    add_device_argument(parser)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, help="image decoding processes (default: cores - 1)")


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    _run_options(parser)


def _task_specs(args: argparse.Namespace, allow_many: bool = False) -> list:
    from ..errors import TaxoclipError
    from ..evaluate.suite import read_suite
    from ..evaluate.tasks import TaskSpec

    if args.suite:
        if args.metadata:
            raise TaxoclipError("give either --metadata or --suite, not both")
        if not args.task and not allow_many:
            raise TaxoclipError("with --suite, name the task with --task NAME")
        tasks = args.task.split(",") if args.task else None
        return read_suite(args.suite, data_root=args.data_root, tasks=tasks, require_models=False).tasks
    if not args.metadata:
        raise TaxoclipError("name a task: --metadata TABLE (or --suite FILE --task NAME)")
    filters = {}
    for item in args.filter:
        column, sep, values = item.partition("=")
        if not sep or not column:
            raise TaxoclipError(f"--filter {item!r}: expected COLUMN=VALUE[,VALUE...]")
        filters[column.strip()] = [v.strip() for v in values.split(",")]
    entry = {"name": args.name or Path(args.metadata).stem, "metadata": args.metadata, "images": args.images,
             "path_column": args.path_column, "label_column": args.label_column, "rank": args.rank,
             "filter": filters, "min_images": args.min_images}
    return [TaskSpec.from_dict(entry, Path.cwd())]


def _load(spec: str, device: str):
    from ..evaluate.features import pick_device
    from ..models import load_model

    return load_model(spec, device=pick_device(device))


def _print_table(frame, digits: int = 2) -> None:
    from ..evaluate.report import markdown_table

    sys.stdout.write(markdown_table(frame, digits, index=False))


def _write_json(path: Path, document: dict) -> None:
    path.write_text(json.dumps(document, indent=1, default=str))


def run_zeroshot(args: argparse.Namespace) -> int:
    import pandas as pd

    from ..evaluate.tasks import eval_text_type, load_task
    from ..evaluate.zeroshot import zero_shot

    text_types = [eval_text_type(t) for t in args.text or []]  # bad names fail before any work
    task = load_task(_task_specs(args)[0])
    loaded = _load(args.model, args.device)
    results = [zero_shot(loaded, task, text_type, args.templates, batch_size=args.batch_size, workers=args.workers)
               for text_type in (text_types or [task.spec.text])]
    summary = pd.DataFrame([r.summary() for r in results])
    for result in results:
        if result.unresolved:
            shown = ", ".join(result.unresolved[:5]) + (" ..." if len(result.unresolved) > 5 else "")
            print(f"taxoclip: {len(result.unresolved)} class names not in the offline taxonomy kept their own text "
                  f"for {result.text_type}: {shown}", file=sys.stderr)
        if result.failed:
            print(f"taxoclip: {len(result.failed)} images could not be read (left out)", file=sys.stderr)
    columns = ["text_type", "top1", "top5", "mean_per_class", *[c for c in summary.columns if c.startswith("top1_")]]
    _print_table(summary[columns])
    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        summary.to_csv(out / "summary.csv", index=False)
        for result in results:
            stem = f"{result.text_type}-"
            result.per_class.to_csv(out / f"{stem}per_class.csv", index=False)
            result.per_rank.to_csv(out / f"{stem}per_rank.csv", index=False)
            result.predictions.to_csv(out / f"{stem}predictions.csv", index=False)
        _write_json(out / "run.json", {"model": loaded.identity.as_dict(), "task": vars(task.spec),
                                       "templates": args.templates, "unresolved": {r.text_type: r.unresolved for r in results},
                                       "failed": results[0].failed})
        print(f"wrote {out}", file=sys.stderr)
    return 0


def run_fewshot(args: argparse.Namespace) -> int:
    from ..evaluate.fewshot import few_shot, write_supports
    from ..evaluate.tasks import load_task

    task = load_task(_task_specs(args)[0])
    loaded = _load(args.model, args.device)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    result = few_shot(loaded, task, tuple(args.shots), args.trials, args.seed, supports=args.supports,
                      methods=methods, probe_c=args.probe_c, batch_size=args.batch_size, workers=args.workers)
    for k, names in sorted(result.supports.left_out.items()):
        if names:
            print(f"taxoclip: {len(names)} classes have fewer than {k + 1} images and are left out at k={k}",
                  file=sys.stderr)
    _print_table(result.summary, 4)
    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        write_supports(result.supports, out / "supports.json")
        result.trials.to_csv(out / "trials.csv", index=False)
        result.summary.to_csv(out / "summary.csv", index=False)
        _write_json(out / "run.json", {"model": loaded.identity.as_dict(), "task": vars(task.spec),
                                       "supports": args.supports, "failed": result.failed})
        print(f"wrote {out} (rerun exactly with --supports {out / 'supports.json'})", file=sys.stderr)
    return 0


def run_suite(args: argparse.Namespace) -> int:
    from ..evaluate.suite import read_suite
    from ..evaluate.suite import run_suite as run

    tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks else None
    suite = read_suite(args.suite, data_root=args.data_root, models=args.model, tasks=tasks)
    result = run(suite, args.output, device=args.device, batch_size=args.batch_size, workers=args.workers,
                 overwrite=args.overwrite)
    for metric, table in result.tables.items():
        from ..evaluate.report import markdown_table
        from ..evaluate.suite import metric_title

        sys.stdout.write(f"\n{metric_title(metric)}\n\n{markdown_table(table)}")
    print(f"wrote {Path(args.output) / 'suite.md'}", file=sys.stderr)
    failures = result.results[result.results["metric"] == "error"]
    return 1 if len(failures) else 0


def run_hierarchy(args: argparse.Namespace) -> int:
    import pandas as pd

    from ..evaluate.hierarchy import hierarchy
    from ..evaluate.report import markdown_table
    from ..evaluate.suite import ModelEntry, slug
    from ..evaluate.tasks import load_task

    task = load_task(_task_specs(args)[0])
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    frames = []
    for entry in [ModelEntry.parse(m) for m in (args.model or ["bioclip"])]:
        loaded = _load(entry.model, args.device)
        figure = None if args.no_figure else out / f"hierarchy-{slug(entry.name)}.png"
        result = hierarchy(loaded, task, figure=figure, k=args.k, seed=args.seed, max_points=args.max_points,
                           title=f"{entry.name} on {task.name}",
                           batch_size=args.batch_size, workers=args.workers)
        frames.append(result.scores.assign(model=entry.name, model_label=loaded.identity.label))
        if figure:
            print(f"wrote {figure}", file=sys.stderr)
    scores = pd.concat(frames, ignore_index=True)
    scores.to_csv(out / "hierarchy.csv", index=False)
    wide = scores.pivot_table(index="rank", columns="model", values=["knn_agreement", "silhouette"], sort=False)
    wide.columns = [f"{metric} {model}" for metric, model in wide.columns]
    chance = scores.drop_duplicates("rank").set_index("rank")["knn_chance"]
    wide.insert(0, "knn_chance", chance.reindex(wide.index))
    text = markdown_table(wide, 3)
    (out / "hierarchy.md").write_text(f"### Hierarchy of the image embeddings on {task.name} (k={args.k})\n\n{text}")
    sys.stdout.write(text)
    return 0


def run_ablation(args: argparse.Namespace) -> int:
    from ..evaluate.ablation import run_ablation as run
    from ..evaluate.suite import ModelEntry
    from ..evaluate.tasks import eval_text_type

    specs = _task_specs(args, allow_many=True)
    texts = tuple(eval_text_type(t.strip()) for t in args.texts.split(",") if t.strip())
    result = run([ModelEntry.parse(m) for m in args.model], specs, args.output, text_types=texts,
                 shots=tuple(args.shots), trials=args.trials, seed=args.seed, templates=args.templates,
                 device=args.device, batch_size=args.batch_size, workers=args.workers)
    from ..evaluate.report import markdown_table

    for key, table in result.tables.items():
        sys.stdout.write(f"\n{key}\n\n{markdown_table(table)}")
    print(f"wrote {Path(args.output) / 'ablation.md'}", file=sys.stderr)
    return 1 if (result.results["error"] != "").any() else 0
