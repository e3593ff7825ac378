"""``kerasafe`` command line: a thin shell over the library (one library call per command, plus printing).

A user's mistake (a kerasafe error) is printed as one line on stderr with a
non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import pathlib
import sys
import warnings

from rich.console import Console
from rich.table import Table

from . import errors

EXIT_ERROR = 1
EXIT_USAGE = 2  # argparse's own code for a bad command line
EXIT_MISMATCH = 3
EXIT_PIPE = 128 + 13  # what a shell reports for a command ended by SIGPIPE (`... | head`)
EXIT_INTERNAL = 70  # sysexits' EX_SOFTWARE: a kerasafe bug, not the user's mistake

class _Console(Console):
    def on_broken_pipe(self) -> None:
        """rich exits with 1 on a closed pipe; kerasafe ends every command there the same way (see main)."""
        self.quiet = True
        raise BrokenPipeError


out = _Console(highlight=False)
err = _Console(stderr=True, highlight=False)


def say(text: str) -> None:
    """One line on stderr, whatever the text held and however narrow the terminal (rich would wrap it)."""
    err.print(" ".join(str(text).split()), markup=False, soft_wrap=True, highlight=False)


def _human_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@contextlib.contextmanager
def _busy(message: str, quiet: bool = False):
    """A spinner for work that can take more than a second (only on a terminal)."""
    if quiet or not err.is_terminal:
        yield
        return
    with err.status(message):
        yield


def _hash_line(h: dict) -> str:
    if not h["recorded"]:
        return "none recorded (not written by kerasafe)"
    if not h["checked"]:
        return f"{h['recorded']} recorded, not checked here (large file: run `kerasafe verify`)"
    bad = [k for k, v in h["members"].items() if v != "ok"]
    return f"all {h['recorded']} match" if not bad else f"MISMATCH in {', '.join(bad[:3])}"


def print_inspect(info: dict) -> None:
    written = " ".join(x for x in (f"Keras {info['keras_version']}" if info["keras_version"] else "", info["backend"] or "") if x)
    rows = [
        ("file", f"{info['path']} ({_human_bytes(info.get('file_bytes'))})"),
        ("format", f"{info['format_description']} [{info['format']}]"),
        ("written by", (written or "unknown") + (" via kerasafe" if info["written_by_kerasafe"] else "")),
        ("created", info["created"] or "unknown"),
        ("parameters", f"{info['total_params']:,}" if info["total_params"] is not None else "none (architecture only)"),
        ("weights", f"{_human_bytes(info['weights_bytes'])}  dtypes: {', '.join(f'{k} x{v}' for k, v in info['dtypes'].items()) or '-'}"),
        ("labels", ", ".join(map(str, info["labels"])) if info["labels"] else "-"),
        ("preprocessing", json.dumps(info["preprocessing"]) if info["preprocessing"] else "-"),
        ("optimizer", _optimizer_text(info["optimizer"])),
        ("hashes", _hash_line(info["hashes"])),
    ]
    progress = info.get("checkpoint")
    if progress:
        where = f"{progress['batch']} batches into epoch {progress['epoch'] + 1}" if progress.get("batch") else f"epoch {progress['epoch']} done"
        value = f"; {progress['monitor']} {progress['value']:.4g}" if isinstance(progress.get("value"), int | float) else ""
        rows.insert(3, ("checkpoint", f"step {progress['step']}: {where}{value}"))
    layout = info.get("layout")
    if layout:  # a sharded checkpoint: the distribution it was written under
        mesh = layout.get("mesh") or {}
        shape = " x ".join(f"{n}={s}" for n, s in zip(mesh.get("axis_names", []), mesh.get("shape", []))) or "-"
        split = sum(1 for v in layout.get("variables", []) if any(layout_axis is not None for layout_axis in (v.get("spec") or [])))
        rows.insert(4, ("layout", f"{layout.get('distribution') or 'no distribution'}, {layout.get('processes')} process(es), "
                                  f"{layout.get('devices')} devices, mesh {shape}; {split} of {len(layout.get('variables', []))} variables split"))
    head = Table(show_header=False, box=None, pad_edge=False)
    head.add_column(style="bold")
    head.add_column()
    for k, v in rows:
        head.add_row(k, v)
    out.print(head)
    if info["layers"]:
        table = Table(title="layers")
        for col in ("name", "class", "output shape", "parameters"):
            table.add_column(col, justify="right" if col == "parameters" else "left")
        for layer in info["layers"]:
            shape = layer.get("output_shape")
            table.add_row(
                str(layer.get("name")),
                str(layer.get("class") or "?"),
                str(tuple(shape)) if shape is not None else "?",
                f"{layer['params']:,}" if layer.get("params") is not None else "?",
            )
        out.print(table)
    if layout and layout.get("variables"):
        table = Table(title="variables (partition spec over the mesh axes)")
        for col in ("variable", "shape", "dtype", "spec"):
            table.add_column(col)
        for v in layout["variables"]:
            spec = v.get("spec")
            table.add_row(str(v.get("path")), str(tuple(v.get("shape") or ())), str(v.get("dtype")),
                          "(" + ", ".join(str(a) for a in spec) + ")" if spec is not None else "-")
        out.print(table)


def _optimizer_text(opt) -> str:
    if not opt:
        return "-"
    parts = [str(opt.get("class"))]
    if opt.get("learning_rate") is not None:
        parts.append(f"lr={opt['learning_rate']}")
    if opt.get("iterations") is not None:
        parts.append(f"step {opt['iterations']}")
    return " ".join(parts)


def cmd_inspect(args) -> int:
    from .inspection import inspect

    info = inspect(args.file, verify_hashes=True if args.verify else None)
    if args.json:
        print(json.dumps(info, default=str))
    else:
        print_inspect(info)
    return EXIT_MISMATCH if info["hashes"]["ok"] is False else 0


def cmd_verify(args) -> int:
    from .inspection import verify

    with _busy(f"hashing {args.file}", args.json):
        report = verify(args.file)
    if args.json:
        print(json.dumps(report))
    else:
        table = Table(title=f"verify {args.file}")
        table.add_column("member")
        table.add_column("state")
        for name, state in report["members"].items():
            table.add_row(name, state if state == "ok" else f"[red]{state}[/red]")
        out.print(table)
        if report["ok"] is None:
            out.print("no hashes recorded in this file (not written by kerasafe): nothing to verify")
    if report["ok"] is False:
        bad = next(k for k, v in report["members"].items() if v != "ok")
        say(f"{args.file}: member '{bad}' does not match the hash recorded at save time; restore the file from a good copy")
        return EXIT_MISMATCH
    return 0


def cmd_scan(args) -> int:
    from .scanning import VERDICT_EXIT, scan
    from .scanning.sarif import sarif

    reports = [scan(path, trusted=args.trust) for path in args.files]
    if args.json:
        print(json.dumps(reports if len(reports) > 1 else reports[0]))
    elif args.sarif:
        print(json.dumps(sarif(reports)))
    else:
        for report in reports:
            colour = {"safe": "green", "unsafe": "red", "inconclusive": "yellow"}[report["verdict"]]
            out.print(f"{report['path']}: [{colour}]{report['verdict']}[/{colour}] ({report['format'] or 'unknown format'}, "
                      f"sha256 {(report['sha256'] or '?')[:16]}...)", soft_wrap=True)
            for f in report["findings"]:
                mark = " (trusted)" if f["trusted"] else ""
                out.print(f"  {f['rule']} {f['severity']}{mark} {f['location']}: {f['message']}", markup=False, soft_wrap=True)
    verdicts = {r["verdict"] for r in reports}
    return VERDICT_EXIT["unsafe"] if "unsafe" in verdicts else VERDICT_EXIT["inconclusive"] if "inconclusive" in verdicts else 0


def cmd_convert(args) -> int:
    from .api import convert
    from .formats import detect, locate

    with _busy(f"converting {args.src} -> {args.dst}", args.quiet):
        dst = convert(args.src, args.dst, weights=args.weights)
    if not args.quiet:
        from .remote import is_url

        if is_url(args.src) or is_url(dst):  # not fetched again only to name its format
            out.print(f"{args.src} -> {dst}")
        else:
            out.print(f"{args.src} [{locate(args.src, 'a model')[1].name}] -> {dst} [{detect(dst).name}]")
    return 0


def cmd_upgrade(args) -> int:
    from .legacy.upgrade import upgrade

    with _busy(f"upgrading models under {args.folder}", args.json):
        results = upgrade(args.folder, force=args.force)
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in results]))
    else:
        # Paths relative to the folder (messages name files in full), wrapped rather than cut.
        roots = {str(pathlib.Path(args.folder).resolve()) + os.sep, str(pathlib.Path(args.folder)) + os.sep}

        def short(text) -> str:
            for root in sorted(roots, key=len, reverse=True):
                text = str(text).replace(root, "")
            return text

        table = Table(title=f"upgrade {args.folder}")
        for col in ("file", "format found", "result", "warnings"):
            table.add_column(col, overflow="fold")
        colors = {"converted": "green", "exists": "yellow", "skipped": "dim", "failed": "red"}
        for r in results:
            result = f"[{colors[r.result]}]{r.result}[/{colors[r.result]}]" + (f" -> {short(r.target)}" if r.result == "converted" else "")
            if r.detail:
                result += f": {short(r.detail)}"
            table.add_row(short(r.source), r.format, result, "\n".join(map(short, r.warnings)) or "-")
        out.print(table)
    return 1 if any(r.result == "failed" for r in results) else 0


def cmd_train(args) -> int:
    from .pipeline.train import train

    result = train(
        args.dataset, args.out, arch=args.arch, image_size=args.image_size, color=args.color, channel_order=args.channel_order,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, augment=args.augment, seed=args.seed,
        label_column=args.label, split=_split_ratios(args.split), quiet=args.quiet, resume=args.resume,
    )
    if not args.quiet:
        table = Table(title=f"trained {result.model.name} on {args.dataset}")
        table.add_column("what")
        table.add_column("value")
        last = {k: v[-1] for k, v in result.history.items()}
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            if key in last:
                table.add_row(f"final {key}", f"{last[key]:.4f}")
        if result.test_accuracy is not None:
            table.add_row("test accuracy", f"{result.test_accuracy:.4f}")
        table.add_row("classes", ", ".join(result.dataset.labels))
        table.add_row("samples (train/val/test)", f"{len(result.dataset.y_train)}/{len(result.dataset.y_val)}/{len(result.dataset.y_test)}")
        for name in result.written:
            table.add_row(name, f"{result.out_dir}/{name}")
        out.print(table)
    return 0


def _split_ratios(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(v) for v in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or any(p < 0 for p in parts) or abs(sum(parts) - 1.0) > 1e-6:
        raise errors.KerasafeError(None, "--split as three fractions summing to 1 (train,val,test)", repr(text), "pass e.g. --split 0.7,0.15,0.15")
    return parts


def cmd_serve(args) -> int:
    from .serving import Settings, serve

    settings = Settings(host=args.host, port=args.port, name=args.name, max_batch_size=args.max_batch_size,
                        max_latency_ms=args.max_latency_ms, batching=not args.no_batching, max_body_mb=args.max_body_mb,
                        timeout_s=args.timeout_s, queue_size=args.queue_size, top_k=args.top_k, trust=args.trust)
    if settings.host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"serving on {settings.host}:{settings.port}: reachable from other machines", highlight=False)
    serve(args.model, settings)
    return 0


def cmd_export(args) -> int:
    from .export import export

    with _busy(f"exporting {args.model} to {args.to}", args.json):
        report = export(args.model, args.out, to=args.to, check=args.check, trust=args.trust)
    if args.json:
        print(json.dumps(report))
    elif "max_abs" in report:
        agreement = "" if report.get("top1_agreement") is None else f", top-1 agreement {report['top1_agreement']:.0%}"
        out.print(f"{report['path']}: checked in its runtime on batches of {report['batches']}: max abs difference "
                  f"{report['max_abs']:.2g}, max rel {report['max_rel']:.2g}{agreement}; manifest: {report['metadata']}",
                  highlight=False)
    else:
        out.print(f"{report['path']}: written, not checked (--no-check)", highlight=False)
    if report.get("rewrites") and not args.json:
        out.print("rewritten to run there (same weights, same arithmetic): " + "; ".join(report["rewrites"]), highlight=False)
    return 0


def cmd_predict(args) -> int:
    from .pipeline.predict import predict

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with _busy("predicting", args.json):
            results, failures = predict(args.model, args.inputs, top_k=args.top_k, montage=args.montage)
    for w in caught:
        if "kerasafe" in str(w.filename) or str(args.model) in str(w.message):
            say(str(w.message))
    for name, message in failures:
        say(f"skipped {name}: {message}")
    if args.json:
        for r in results:
            print(json.dumps({"input": r["input"], "label": r["label"], "score": r["score"], "top": r["top"]}))
    else:
        table = Table(title=f"{len(results)} predictions")
        table.add_column("input", overflow="fold")
        table.add_column("label")
        table.add_column("score", justify="right")
        for r in results:
            table.add_row(r["input"], r["label"], f"{r['score']:.4f}")
        out.print(table)
        if args.montage and results:
            out.print(f"montage: {args.montage}")
    if not results and not failures:
        say(f"{' '.join(args.inputs)}: expected image or CSV files, found none; pass files or folders that hold them")
        return EXIT_ERROR
    return EXIT_ERROR if failures else 0


def cmd_evaluate(args) -> int:
    from .pipeline.predict import evaluate

    with _busy("evaluating", args.json):
        result = evaluate(args.model, args.dataset)
    if args.json:
        print(json.dumps(result))
    else:
        out.print(f"{result['dataset']}: {result['samples']} samples, accuracy {result['accuracy']:.4f}")
        out.print(result["report"], markup=False)
    return 0


def cmd_demo(args) -> int:
    from .demo import run

    return run(args.out, quiet=args.quiet)


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as kerasafe's one line (argparse prints a usage block and the message)."""

    def error(self, message: str):
        say(f"{self.prog}: expected valid arguments, found {message}; see `{self.prog} --help`")
        self.exit(EXIT_USAGE)


def _whole_number(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} (a whole number >= {minimum} is expected)") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} (it must be >= {minimum})")
        return value
    return parse


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} (a number > 0 is expected)") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} (it must be a finite number > 0)")
    return value


def _image_size(text: str) -> tuple[int, int]:
    """``64`` is 64x64; ``64x48`` is 64 high and 48 wide."""
    parts = text.lower().split("x")
    if len(parts) in (1, 2) and all(p.strip().isdigit() and 0 < int(p) <= 16384 for p in parts):
        return (int(parts[0]), int(parts[-1]))
    raise argparse.ArgumentTypeError(f"{text!r} (HEIGHTxWIDTH such as 64x64, or one number for a square)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="kerasafe", description="Save, load, inspect and convert Keras models safely.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("inspect", help="describe a model file without loading Keras")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="one JSON object for scripts")
    p.add_argument("--verify", action="store_true", help="check every hash even for large files")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("verify", help="check every member against the hash recorded at save time")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("scan", help="is it safe to load? findings and a verdict, without loading (exit 0 safe, 1 unsafe, 2 inconclusive)")
    p.add_argument("files", nargs="+", metavar="FILE")
    shape = p.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="the report as JSON (a list for several files)")
    shape.add_argument("--sarif", action="store_true", help="SARIF 2.1.0 for code-scanning tools")
    p.add_argument("--trust", nargs="+", default=[], metavar="NAME", help="accept findings of these names (e.g. mypackage.MyLayer)")
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("convert", help="convert between any two formats")
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--weights", help="weights file to join with an architecture-only SRC")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("upgrade", help="convert every old model under a folder to .keras beside it")
    p.add_argument("folder")
    p.add_argument("--force", action="store_true", help="replace .keras files that already exist")
    p.add_argument("--json", action="store_true", help="one JSON list of outcomes instead of the table")
    p.set_defaults(func=cmd_upgrade)

    p = sub.add_parser("train", help="train a classifier; the model file carries its labels and preprocessing")
    p.add_argument("dataset", help="'digits', a CSV file, or an image folder (training/validation/testing or class folders)")
    p.add_argument("--out", required=True, help="run folder: model.keras, history.csv, plot.png, report.txt, checkpoints/")
    p.add_argument("--arch", default="auto", choices=["auto", "mlp", "shallownet", "resnet"])
    p.add_argument("--image-size", type=_image_size, help="HEIGHTxWIDTH, e.g. 64x48, or 64 for 64x64 (default: the first image's size)")
    p.add_argument("--color", default="rgb", choices=["rgb", "grayscale"])
    p.add_argument("--channel-order", default="rgb", choices=["rgb", "bgr"], help="bgr: as OpenCV arrays are")
    p.add_argument("--epochs", type=_whole_number(1), default=10)
    p.add_argument("--batch-size", type=_whole_number(1), default=32)
    p.add_argument("--lr", type=_positive_number, default=1e-3)
    p.add_argument("--augment", action="store_true", help="random flips, rotations, shifts and zoom while training")
    p.add_argument("--seed", type=_whole_number(0), default=0)
    p.add_argument("--label", help="CSV label column (name or index; default: the last column)")
    p.add_argument("--split", default="0.7,0.15,0.15", help="train,val,test fractions for data without training/validation/testing folders")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its newest checkpoint (after a crash, or with more --epochs)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="predict image or CSV files with the preprocessing stored in the model")
    p.add_argument("model")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("--montage", help="write a 4x4 grid of labelled images to this PNG")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--top-k", type=_whole_number(1), default=1)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="accuracy, per-class report and confusion matrix on a data set")
    p.add_argument("model")
    p.add_argument("dataset")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("serve", help="serve a model over HTTP: /predict, Open Inference Protocol v2, /metrics, an upload page")
    p.add_argument("model")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=_whole_number(0), default=8000)
    p.add_argument("--name", help="the model's name in /v2/models/NAME (default: the file's name)")
    p.add_argument("--max-batch-size", type=_whole_number(1), default=32, help="inputs per predict call, and per request")
    p.add_argument("--max-latency-ms", type=_positive_number, default=5.0, help="how long a batch waits to fill")
    p.add_argument("--no-batching", action="store_true", help="one predict call per request (answers bitwise as `predict` gives them)")
    p.add_argument("--max-body-mb", type=_positive_number, default=16.0, help="larger request bodies get 413")
    p.add_argument("--timeout-s", type=_positive_number, default=30.0, help="a request not answered by then gets 504")
    p.add_argument("--queue-size", type=_whole_number(1), default=256, help="requests waiting at most; more get 503")
    p.add_argument("--top-k", type=_whole_number(1), default=3)
    p.add_argument("--trust", action="store_true", help="serve a file `kerasafe scan` calls unsafe (loads with safe_mode=False)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("export", help="export to ONNX, LiteRT, a SavedModel or OpenVINO IR, checked by running it against Keras")
    p.add_argument("model")
    p.add_argument("out")
    p.add_argument("--to", required=True, choices=["onnx", "litert", "saved_model", "openvino"])
    p.add_argument("--no-check", dest="check", action="store_false", help="skip running the export against Keras (not advised)")
    p.add_argument("--trust", action="store_true", help="export a file `kerasafe scan` calls unsafe (safe_mode=False)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="the main job: train on digits, predict new digit images with a montage, every format")
    p.add_argument("--out", default="kerasafe-demo", help="folder for everything it writes")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; every outcome is an exit code and at most one line on stderr, never a traceback.

    ``KERASAFE_DEBUG=1`` lets an unexpected exception (a kerasafe bug) raise with its traceback.
    """
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except errors.KerasafeError as exc:
        say(str(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (`kerasafe inspect --json m.keras | head -c 10`): stop quietly. Python would
        # report the broken pipe again when it flushes stdout at exit, so stdout is pointed at /dev/null.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE
    except Exception as exc:
        if os.environ.get("KERASAFE_DEBUG"):
            raise
        text = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
        say(f"kerasafe: expected to finish, found an internal error ({text}); "
            "please report it with the command (KERASAFE_DEBUG=1 shows the traceback)")
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
