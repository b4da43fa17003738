"""`labelqa scan`: run detectors, write the report, apply the gate."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from labelqa.cli import options as o
from labelqa.cli.console import ProgressLog, stdout_console


class OutputFormat(str, Enum):
    """What `scan` prints to stdout."""

    human = "human"
    json = "json"
    markdown = "markdown"
    github = "github"


def scan(
    data: o.DataArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the report files.", rich_help_panel=o.OUT)] = Path(
        "labelqa-report"
    ),
    label_col: o.LabelCol = "label",
    pred_probs_col: o.PredProbsCol = None,
    pred_probs: o.PredProbsFile = None,
    combine_models: o.CombineModels = "geometric",
    classes: o.Classes = None,
    classes_file: o.ClassesFile = None,
    id_col: o.IdCol = None,
    input_format: o.InputFormat = None,
    renormalize: o.Renormalize = False,
    task: o.Task = "auto",
    label_sep: o.LabelSep = None,
    embeddings_col: o.EmbeddingsCol = "embedding",
    embeddings: o.EmbeddingsFile = None,
    logits_by_epoch: o.LogitsByEpoch = None,
    threshold_samples: o.ThresholdSamples = None,
    detectors: o.Detectors = None,
    issue_rule: o.IssueRule = "primary_or_2",
    filter_by: o.FilterBy = "prune_by_noise_rate",
    score_method: o.ScoreMethod = "self_confidence",
    adjust_pred_probs: o.AdjustPredProbs = False,
    frac_noise: o.FracNoise = 1.0,
    min_examples_per_class: o.MinExamples = 1,
    num_to_remove_per_class: o.NumToRemove = None,
    aggregation: Annotated[
        str, typer.Option("--aggregation", help="Multi-label row score: ema (exponential moving average of the "
                          "sorted per-class scores) or softmin.", rich_help_panel=o.ML)
    ] = "ema",
    ema_alpha: Annotated[float, typer.Option("--ema-alpha", help="alpha of the ema aggregation.",
                                             rich_help_panel=o.ML)] = 0.8,
    softmin_temperature: Annotated[float, typer.Option("--softmin-temperature", help="Temperature of softmin.",
                                                       rich_help_panel=o.ML)] = 0.1,
    aum_cutoff: o.AumCutoff = None,
    aum_percentile: o.AumPercentile = None,
    nrg_mode: Annotated[
        str, typer.Option("--nrg-mode", help="auto (exact up to 60,000 rows, else kNN), exact or knn.",
                          rich_help_panel=o.NRG)
    ] = "auto",
    nrg_kernel: Annotated[
        str, typer.Option("--nrg-kernel", help="prob (features x probabilities) or feature (features only).",
                          rich_help_panel=o.NRG)
    ] = "prob",
    nrg_power: Annotated[float, typer.Option("--nrg-power", help="Edge power t (4 images/text, 8 audio).",
                                             rich_help_panel=o.NRG)] = 4.0,
    nrg_k: Annotated[Optional[int], typer.Option("--nrg-k", min=1, help="Neighbours per row in kNN mode.",
                                                 rich_help_panel=o.NRG, show_default=False)] = None,
    nrg_edge_cutoff: Annotated[float, typer.Option("--nrg-edge-cutoff", min=0.0, max=0.999,
                                                   help="Drop edges whose kernel value is at most this.",
                                                   rich_help_panel=o.NRG)] = 0.03,
    nrg_lambda: Annotated[float, typer.Option("--nrg-lambda", min=0.0, help="lambda of the suspect set.",
                                              rich_help_panel=o.NRG)] = 0.05,
    nrg_backend: Annotated[str, typer.Option("--nrg-backend", help="Exact mode engine: numpy, torch or auto.",
                                             rich_help_panel=o.NRG)] = "numpy",
    nrg_index: Annotated[str, typer.Option("--nrg-index", help="kNN index: auto (sklearn), sklearn, faiss or brute.",
                                           rich_help_panel=o.NRG)] = "auto",
    outlier_rate: Annotated[float, typer.Option("--outlier-rate", min=0.0, max=0.99,
                                                help="Share of rows flagged is_outlier by NRG.",
                                                rich_help_panel=o.NRG)] = 0.01,
    max_issue_rate: o.MaxIssueRate = None,
    max_class_issue_rate: o.MaxClassIssueRate = None,
    max_issues: o.MaxIssues = None,
    max_noise_rate: o.MaxNoiseRate = None,
    noise_rate_bound: o.NoiseRateBound = None,
    gate_detectors: o.GateDetectors = None,
    exit_zero: o.ExitZero = False,
    output_format: Annotated[
        OutputFormat,
        typer.Option("--format", help="stdout: human (rich tables), json (summary.json), markdown (summary.md), "
                     "github (workflow annotations; summary.md appended to $GITHUB_STEP_SUMMARY).",
                     rich_help_panel=o.OUT),
    ] = OutputFormat.human,
    top: Annotated[int, typer.Option("--top", min=0, help="Issues listed in the terminal.", rich_help_panel=o.OUT)] = 10,
    engine: Annotated[
        str, typer.Option("--engine", help="auto (stream large multiclass Parquet/Arrow inputs scanned with cl "
                          "only), memory, stream (bounded memory) or dask.", rich_help_panel="Scale")
    ] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Rows per record batch of the stream and "
                                            "dask engines.", rich_help_panel="Scale")] = 262_144,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Dask scheduler address (default: a local "
                                                     "cluster on this machine).", rich_help_panel="Scale",
                                                     show_default=False)] = None,
    quiet: o.Quiet = False,
    verbose: o.Verbose = False,
    config: o.Config = None,
) -> int:
    """Find label issues in DATA and write a report (report.html, issues.parquet/.csv, summary.json/.md).

    Option defaults can come from the scan and gate tables of a labelqa.toml
    (or tool.labelqa.scan / tool.labelqa.gate in pyproject.toml); flags given on the command line win.
    """
    from labelqa.config import explicit_params, load_config, merge_cli

    given = dict(locals())
    del given["merge_cli"], given["load_config"], given["explicit_params"]
    cfg = load_config(given.pop("config"))
    explicit = explicit_params()
    merged = merge_cli(cfg.values(("scan", "gate")), given, explicit=set(given) if explicit is None else explicit)
    return _run(**merged)


def _run(
    *, data: Path, out: Path, label_col: str, pred_probs_col: list[str] | None, pred_probs: list[Path] | None,
    combine_models: str, classes: str | None,
    classes_file: Path | None, id_col: str | None, input_format: str | None, renormalize: bool, task: str,
    label_sep: str | None, embeddings_col: str, embeddings: Path | None, logits_by_epoch: str | None,
    threshold_samples: str | None, detectors: str | None, issue_rule: str, filter_by: str, score_method: str,
    adjust_pred_probs: bool, frac_noise: float, min_examples_per_class: int, num_to_remove_per_class: str | None,
    aggregation: str, ema_alpha: float, softmin_temperature: float, aum_cutoff: float | None,
    aum_percentile: float | None, nrg_mode: str, nrg_kernel: str, nrg_power: float, nrg_k: int | None,
    nrg_edge_cutoff: float, nrg_lambda: float, nrg_backend: str, nrg_index: str, outlier_rate: float,
    max_issue_rate: float | None, max_class_issue_rate: float | None, max_issues: int | None,
    max_noise_rate: float | None, noise_rate_bound: str | None, gate_detectors: str | None, exit_zero: bool,
    output_format: OutputFormat, top: int, quiet: bool, verbose: bool, engine: str, batch_size: int,
    scheduler: str | None,
) -> int:
    from labelqa.gate import check_gate, gate_rules
    from labelqa.report.markdown import render_markdown
    from labelqa.engines.choose import choose_engine
    from labelqa.report.writers import summary_json, write_report
    from labelqa.scan import scan as run_scan

    load_kwargs = o.load_options(
        label_col=label_col, pred_probs_col=pred_probs_col, pred_probs=pred_probs, combine_models=combine_models,
        classes=classes,
        classes_file=classes_file, id_col=id_col, input_format=input_format, renormalize=renormalize,
        task=task if task != "auto" else None, label_sep=label_sep,
        embeddings_col=embeddings_col if embeddings_col != "embedding" else None, embeddings_file=embeddings,
        logits_by_epoch=logits_by_epoch, threshold_samples=threshold_samples,
    )
    cl: dict[str, Any] = {
        "filter_by": filter_by,
        "frac_noise": frac_noise,
        "num_to_remove_per_class": o.parse_int_list(num_to_remove_per_class, "--num-to-remove-per-class"),
        "min_examples_per_class": min_examples_per_class,
    }
    # task-specific options go in only when set, so the other task's detector does not reject them
    _set_if_changed(cl, "score_method", score_method, "self_confidence")
    _set_if_changed(cl, "adjust_pred_probs", adjust_pred_probs, False)
    _set_if_changed(cl, "aggregation", aggregation, "ema")
    _set_if_changed(cl, "alpha", ema_alpha, 0.8)
    _set_if_changed(cl, "temperature", softmin_temperature, 0.1)
    nrg: dict[str, Any] = {
        "nrg_mode": nrg_mode, "nrg_kernel": nrg_kernel, "nrg_power": nrg_power, "outlier_rate": outlier_rate,
        "nrg_edge_cutoff": nrg_edge_cutoff, "nrg_lambda": nrg_lambda, "nrg_backend": nrg_backend,
        "nrg_index": nrg_index,
    }
    if nrg_k is not None:
        nrg["nrg_k"] = nrg_k
    aum: dict[str, Any] = {"aum_cutoff": aum_cutoff, "aum_percentile": aum_percentile}
    if (aum_cutoff is not None or aum_percentile is not None) and logits_by_epoch is None:
        from labelqa.errors import LabelqaError

        raise LabelqaError("--aum-cutoff/--aum-percentile need training dynamics", "pass --logits-by-epoch PATH")
    rules = gate_rules(  # validated before any work
        max_issue_rate=max_issue_rate, max_class_issue_rate=max_class_issue_rate, max_issues=max_issues,
        max_noise_rate=max_noise_rate, noise_rate_bound=noise_rate_bound, gate_detectors=gate_detectors,
    )
    names = o.split_names(detectors)

    chosen = choose_engine(engine, data, memory_only=_needs_memory(
        embeddings_col=embeddings_col, embeddings=embeddings,
        logits_by_epoch=logits_by_epoch, pred_probs=pred_probs, names=names, data=data,
    ))
    with ProgressLog(quiet=quiet or output_format is not OutputFormat.human, verbose=verbose) as log:
        if chosen == "memory":
            from labelqa.runtime import skip_pyarrow_pandas_probe

            skip_pyarrow_pandas_probe()
            result = run_scan(
                data, detectors=names, params={"cl": cl, "nrg": nrg, "aum": aum}, issue_rule=issue_rule,
                progress=log, **load_kwargs,
            )
            outcome: dict[str, Any] = {}

            def judged_summary() -> dict[str, Any]:  # runs while the issue files are being written
                outcome["gate"] = check_gate(result, rules)
                outcome["summary"] = result.summary()
                outcome["summary"]["gate"] = outcome["gate"].as_dict()
                return outcome["summary"]

            log(f"writing report to {out}/")
            write_report(result, out, summary=judged_summary)
            gate, summary = outcome["gate"], outcome["summary"]
            issues = result.issues_table
            log(f"done: {result.n_issues:,} of {result.data.n_rows:,} rows flagged")
        else:
            summary, gate = _scan_out_of_core(chosen, data, out, load_kwargs, cl, rules, batch_size, scheduler, log)
            issues = lambda: _top_issues(out, max(top, 20))  # noqa: E731 - bounded read of the best-ranked rows

    if output_format is OutputFormat.json:
        typer.echo(summary_json(summary), nl=False)
    elif output_format is OutputFormat.markdown:
        typer.echo(render_markdown(summary, issues()), nl=False)
    elif output_format is OutputFormat.github:
        from labelqa.report.github import append_step_summary, github_annotations

        table = issues()
        typer.echo(github_annotations(summary, table, cap=top, file=str(data)), nl=False)
        append_step_summary(render_markdown(summary, table))
    elif not quiet:
        from labelqa.report.terminal import print_summary  # rich: only imported when something is shown

        console = stdout_console()
        print_summary(console, summary, issues() if top else None, top=top)
        from labelqa.report.writers import REPORT_FILES

        files = ", ".join(name for name in REPORT_FILES if (out / name).exists())
        console.print(f"Report written to [bold]{out}/[/bold] ({files})", highlight=False)
    if not gate.passed:
        from labelqa.cli.app import error_line

        if not exit_zero:
            error_line(f"quality gate failed: {gate.reason}")
            return 1
        if not quiet:
            error_line(f"quality gate failed (ignored by --exit-zero): {gate.reason}")
    return 0


def _set_if_changed(params: dict[str, Any], key: str, value: Any, default: Any) -> None:
    if value != default:
        params[key] = value


def _needs_memory(*, embeddings_col: str, embeddings: Path | None,
                  logits_by_epoch: str | None, pred_probs: list[Path] | None, names: list[str] | None,
                  data: Path) -> str | None:
    """Why only the in-memory engine can run this scan, or ``None``."""
    if names is not None and set(names) - {"cl"}:
        return f"the detectors {', '.join(sorted(set(names) - {'cl'}))}"
    if embeddings is not None or logits_by_epoch is not None:
        return "embeddings or training dynamics for nrg/aum"
    if pred_probs:
        return "probabilities from a .npy file"
    if names is None and Path(data).is_file() and _has_column(Path(data), embeddings_col):
        return f"embeddings (column {embeddings_col!r}) for nrg"
    return None


def _has_column(path: Path, name: str) -> bool:
    from labelqa.data.readers import read_schema

    try:
        return name in read_schema(path, None).names
    except Exception:  # noqa: BLE001 - unreadable: the loader reports it properly
        return False


def _scan_out_of_core(engine: str, data: Path, out: Path, load_kwargs: dict[str, Any], cl: dict[str, Any],
                      rules: dict[str, Any], batch_size: int, scheduler: str | None,
                      log: Any) -> tuple[dict[str, Any], Any]:
    """Run the stream or Dask engine, then apply the gate to its summary and rewrite summary.json/.md."""
    from labelqa.atomic import write_atomic
    from labelqa.gate import check_summary_gate
    from labelqa.report.writers import summary_json

    if isinstance(load_kwargs.get("pred_probs_col"), list):
        from labelqa.errors import LabelqaError

        raise LabelqaError(f"--engine {engine} reads one probability column, got several --pred-probs-col",
                           "use --engine memory to combine several models")
    kwargs = {k: v for k, v in load_kwargs.items() if k in (
        "label_col", "pred_probs_col", "classes", "classes_file", "id_col", "input_format", "renormalize", "task",
        "label_sep")}
    if set(load_kwargs) - set(kwargs) - {"pred_probs_file", "combine_models"}:
        extra = sorted(set(load_kwargs) - set(kwargs) - {"pred_probs_file", "combine_models"})
        from labelqa.errors import LabelqaError

        raise LabelqaError(f"options {', '.join(extra)} need --engine memory", "drop them or use --engine memory")
    kwargs.update({k: v for k, v in cl.items() if k in (
        "filter_by", "score_method", "adjust_pred_probs", "frac_noise", "num_to_remove_per_class",
        "min_examples_per_class", "aggregation", "alpha", "temperature")})
    log(f"scanning {data} with the {engine} engine (batches of {batch_size:,} rows)")
    if engine == "stream":
        from labelqa.engines.stream import scan_stream

        res = scan_stream(data, out_dir=out, batch_size=batch_size, progress=log, **kwargs)
    else:
        from labelqa.engines.dask_engine import scan_dask

        res = scan_dask(data, out_dir=out, scheduler=scheduler, batch_size=batch_size, progress=log, **kwargs)
    summary = dict(res.summary)
    gate = check_summary_gate(summary, rules)
    summary["gate"] = gate.as_dict()
    summary["options"] = {**summary.get("options", {}), "engine": engine}
    write_atomic(out / "summary.json", lambda p: p.write_text(summary_json(summary), encoding="utf-8"))
    if gate.rules:  # put the gate line under the title of the engine's summary.md
        title, _, rest = (out / "summary.md").read_text(encoding="utf-8").partition("\n\n")
        status = "PASSED" if gate.passed else "FAILED"
        md = f"{title}\n\n**Quality gate: {status}** ({gate.reason})\n\n{rest}"
        write_atomic(out / "summary.md", lambda p: p.write_text(md, encoding="utf-8"))
    from labelqa.report.html import write_html

    log("writing report.html (issues.parquet read back in batches)")
    write_html(out)
    log(f"done: {res.n_issues:,} of {res.n_rows:,} rows flagged")
    return summary, gate


def _top_issues(out: Path, n: int) -> Any:
    """The ``n`` best-ranked rows of a report's issues.parquet, read with a filter (bounded memory)."""
    import pyarrow.parquet as pq

    return pq.read_table(out / "issues.parquet", filters=[("rank", "<=", n)])
