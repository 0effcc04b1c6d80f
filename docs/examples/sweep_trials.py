"""Plot a sweep's trials: one metric against one swept parameter, from the provenance store.

    pip install './python[pandas,postgres]' matplotlib
    python docs/examples/sweep_trials.py --db provenance.db --sweep mnist_sweep-0c864ea96606 \
        --param training.learning_rate --metric validation.log_loss --out trials.png

``--sweep`` takes a sweep's id (``host sweep show`` lists them) or its name, when one sweep has
it. The trials are read with the same filter language as ``host runs list --filter``; the plot
is written as a PNG (matplotlib's Agg backend, so no display is needed).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

import matplotlib

if not os.environ.get("DISPLAY"):
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend

import hoststore  # noqa: E402


def quoted(text: str) -> str:
    """Text as a quoted value of the filter language."""
    return "'" + text.replace("'", "''") + "'"


def like_prefix(text: str) -> str:
    """A ``like`` pattern matching text that starts with ``text``."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return quoted(escaped + "-%")


def sweep_trials(store: hoststore.Store, sweep: str):  # -> pandas.DataFrame
    """The trials of the sweep with id ``sweep`` or, failing that, of the one sweep named so
    (a sweep's id is its name, a dash and a digest of its config)."""
    trials = hoststore.search_runs(store, filter=f"sweep = {quoted(sweep)}", order_by="trial")
    if len(trials):
        return trials
    trials = hoststore.search_runs(store, filter=f"sweep like {like_prefix(sweep)}", order_by="sweep, trial")
    sweeps = sorted(set(trials["sweep_id"]))
    if not sweeps:
        sys.exit(f"{store.locator}: no sweep {sweep}; `host sweep show` lists the sweeps")
    if len(sweeps) > 1:
        sys.exit(f"{store.locator}: several sweeps are named {sweep}: {', '.join(sweeps)}; give one's id")
    return trials


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", help="the store: a SQLite file or postgres:// URL (default: HOST_DB, as host)")
    parser.add_argument("--sweep", required=True, help="the sweep's id or name")
    parser.add_argument("--param", required=True, help="the swept parameter (training.learning_rate)")
    parser.add_argument("--metric", required=True, help="the metric to plot (validation.log_loss)")
    parser.add_argument("--out", required=True, help="the PNG file to write")
    parser.add_argument("--show", action="store_true", help="also show the plot in a window")
    args = parser.parse_args(argv)

    with hoststore.open(args.db) as store:
        trials = sweep_trials(store, args.sweep)
    param, metric = f"params.{args.param}", f"metrics.{args.metric}"
    for column, kind in ((param, "parameter"), (metric, "metric")):
        if column not in trials.columns:
            names = sorted(c.split(".", 1)[1] for c in trials.columns if c.startswith(column.split(".")[0] + "."))
            sys.exit(f"the trials have no {kind} {column.split('.', 1)[1]}; they have: {', '.join(names)}")

    table = trials[["trial", "run_id", "status", param, metric]].sort_values([param, "trial"])
    print(table.to_string(index=False))
    figure, axes = plt.subplots(figsize=(6, 4))
    numeric = table[param].map(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)).all()
    # Numbers on their own axis (logarithmic across decades); anything else (a list such as
    # [32, 16], a string) as categories in the order of the table.
    x = table[param] if numeric else table[param].astype(str)
    axes.plot(x, table[metric], marker="o")
    if numeric and (table[param] > 0).all() and table[param].max() >= 100 * table[param].min():
        axes.set_xscale("log")
    axes.set_xlabel(args.param)
    axes.set_ylabel(args.metric)
    axes.set_title(f"{trials['sweep_id'].iloc[0]}: {len(table)} trials")
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(args.out, format="png", dpi=100)
    print(f"wrote {args.out}")
    if args.show:
        plt.show()


if __name__ == "__main__":
    main()
