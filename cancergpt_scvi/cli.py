"""The ``cancergpt-scvi`` command: ``demo`` and ``embed``."""

from __future__ import annotations

import argparse
import logging
import sys

# Errors that mean "this input is refused": exit 2 with the message, never a traceback.
_REFUSALS = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
    KeyError,
    ValueError,
    TypeError,
)


def _positive_int(text: str) -> int:
    """argparse type of a count that must be at least 1 (argparse turns the error into exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive whole number, got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cancergpt-scvi", description="CancerGPT single-cell foundation model (scverse)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="Simulate an atlas, pretrain on CPU, embed, score with scib-metrics, plot."
    )
    demo.add_argument("--out", default="demo_output", help="Output folder.")
    demo.add_argument("--n-cells", type=int, default=1500, help="Cells of the simulated atlas.")
    demo.add_argument("--n-genes", type=int, default=600, help="Genes of the simulated atlas.")
    demo.add_argument("--max-epochs", type=int, default=6, help="Pretraining epochs.")
    demo.add_argument("--preset", default="cpu-small", help="Size preset of the model.")
    demo.add_argument("--seed", type=int, default=0, help="Seed of simulation and training.")
    demo.add_argument(
        "--scvi-epochs", type=int, default=200, help="Training epochs of the scVI baseline."
    )

    embed = sub.add_parser(
        "embed", help="Embed an h5ad (or h5mu) file with a saved or published model."
    )
    embed.add_argument("input", help="Input .h5ad file, or .h5mu file (MuData).")
    embed.add_argument(
        "--model",
        required=True,
        help="Folder written by CancerGPTModel.save; a folder of published weights (the "
        "release's model.pth or scGPT's best_model.pt); or the name of a published model "
        "(cancergpt), downloaded into the cache ($CANCERGPT_SCVI_CACHE) on first use.",
    )
    embed.add_argument("--out", required=True, help="Output .h5ad file (.h5mu for an .h5mu input).")
    embed.add_argument("--key", default="X_cancergpt", help="obsm key of the embedding.")
    embed.add_argument(
        "--layer",
        default=None,
        help="Layer of the input holding the expression, or X for adata.X (default: where the "
        "model's training data held it).",
    )
    embed.add_argument(
        "--modality",
        default=None,
        help="RNA modality of an .h5mu input (default: the one the model was set up with, "
        "else rna).",
    )
    embed.add_argument(
        "--batch-size", type=_positive_int, default=64, help="Cells per forward pass."
    )
    embed.add_argument(
        "--seed",
        type=int,
        default=0,
        help="Seed of the random parts of a published model's token rule (ties, scGPT's gene "
        "subset), so that runs agree (default 0).",
    )
    embed.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace an existing output file and an existing obsm key of the input.",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``cancergpt-scvi`` command (its console-script entry point).

    Parameters
    ----------
    argv
        The arguments, e.g. ``["demo", "--out", "demo_output"]``; ``None`` reads them from
        :data:`sys.argv`.

    Returns
    -------
    The exit status: 0 on success, 2 when the input is refused (a one-line message goes to
    stderr), and for ``embed`` 130 on SIGINT (Ctrl-C) and 143 on SIGTERM, after removing the
    unfinished output. Malformed arguments exit with status 2 through argparse
    (:class:`SystemExit`).
    """
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.command == "demo":
        import matplotlib

        matplotlib.use("Agg")  # the demo writes PNGs and shows no window
    from cancergpt_scvi.pretrained import ModelDownloadError
    from cancergpt_scvi.workflow import Interrupted, embed_file, run_demo, stop_on_signals

    try:
        if args.command == "demo":
            paths = run_demo(
                args.out,
                args.n_cells,
                args.n_genes,
                args.max_epochs,
                args.preset,
                args.seed,
                args.scvi_epochs,
            )
            for name, path in paths.items():
                print(f"{name}: {path}")
        else:
            with stop_on_signals():
                embed_file(
                    args.input,
                    args.model,
                    args.out,
                    args.key,
                    args.batch_size,
                    args.overwrite,
                    args.layer,
                    args.modality,
                    args.seed,
                )
            print(f"wrote {args.out}")
    except Interrupted as err:
        if err.written is None:
            outcome = f"{args.out} was not written and no temporary file is left"
        else:
            outcome = f"{err.written} was already written in full"
        print(f"cancergpt-scvi {args.command}: stopped by {err}; {outcome}.", file=sys.stderr)
        return err.exit_status
    except (*_REFUSALS, ModelDownloadError) as err:
        # str(KeyError) quotes its message; the CLI prints it as it reads
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        message = " ".join(str(message).split())  # one line
        print(f"cancergpt-scvi {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
