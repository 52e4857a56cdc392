"""Paper figures drawn from a suite's results (the synthetic problems of models/synthetic/).

``FIGURES[name](suite_dir, df)`` draws figure `name` from the suite's results folder and its results table
(`store.load_results(suite_dir)`), writes PNG and PDF (and, for some, a small table) into `suite_dir`, and
returns the written paths; it returns [] when the suite has no finished run of the figure's family. A suite
asks for figures with ``report: {figures: [name, ...]}``. Each run's drawing data is its
``runs/<run_id>/artifacts.json`` (the family's ``artifacts()``), read back as the problem's typed artifacts
(``HimmelblauArtifacts``, ``ShiftCosineArtifacts``, ``GradientFieldArtifacts``, ``PushPullArtifacts``).

* ``himmelblau_panels`` (A.2, Figure 8): rows = estimators, columns = snapshot steps; contours of Himmelblau's
  function (blue low, red high), codebook (orange circles), initial points (green), updated points (blue);
  the first seed is drawn. ``himmelblau_table.csv``/``.md``: distortion and mean objective per estimator and
  step, mean ± std over seeds, and in how many seeds the rotation trick's distortion is the lower.
* ``shift_cosine`` (A.4, Figures 4 and 10): mean cosine between each estimator's update and the STE's, and
  their norm ratio, against the shift (symmetric-log x axis, so shift 0 is drawn: linear below 1, log above);
  then the non-STE estimator's updates of Figure 4's points at the smallest shift and at 10 (Figure 10).
* ``gradient_fields`` (§3, Figure 2): quiver plots, rows = functions, columns = exact ∇f(e) and each
  estimator's field; arrows show the direction, colour the log10 magnitude.
* ``push_pull`` (§4.3, Figures 4-5): rows = estimators, columns = code step along / against q; colour = change
  of ‖e − q‖ after one step per unit of the code's step (blue: pushed away, green: pulled in).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from models.synthetic import (GradientFieldArtifacts, HimmelblauArtifacts, PushPullArtifacts, ShiftCosineArtifacts,
                              himmelblau)
from models.synthetic.push_pull import DIRECTIONS

from . import store
from .status import RunStatus
from .report import plots as report_plots

#: Plot order of the estimators: the two the paper compares first.
LEADING = ("ste", "rotation")
FUNCTION_LABELS = {"quadratic": r"$f = x^2 + y^2$", "log_tanh": r"$f = \log|x/2 + \tanh y|$",
                   "himmelblau": "Himmelblau"}
GREEN, IVORY, BLUE, ORANGE = "#1a9850", "#fffff0", "#2166ac", "#ff8c00"
#: gradient_fields draws at most this many arrows along each axis.
MAX_ARROWS = 16


# -- shared helpers -------------------------------------------------------------------------------------

def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def estimator_order(names) -> list[str]:
    names = list(dict.fromkeys(names))
    return [n for n in LEADING if n in names] + sorted(n for n in names if n not in LEADING)


def runs_of(suite_dir: Path, df: pd.DataFrame, kind) -> list[tuple[pd.Series, object]]:
    """(results row, artifacts of type `kind`) of every finished run of the family `kind.problem` whose
    artifacts.json `kind` describes."""
    if df.empty or "config.model.family" not in df.columns:
        return []
    rows = df[(df["status"] == RunStatus.FINISHED) & (df["config.model.family"] == kind.problem)]
    out = []
    for _, row in rows.iterrows():
        path = Path(suite_dir) / "runs" / row["run_id"] / store.ARTIFACTS
        if path.exists():
            data = json.loads(path.read_text())
            if kind.describes(data):
                out.append((row, kind.from_json(data)))
    return out


def _estimator(row: pd.Series) -> str:
    return str(row["config.estimator.name"])


def _seed(row: pd.Series) -> int:
    return int(row["config.seed"])


def _group_key(row: pd.Series) -> tuple:
    """The run's configuration apart from estimator and seed (runs that differ only there are compared)."""
    keys = sorted(k for k in row.index if k.startswith("config.") and not k.startswith("config.estimator.")
                  and k != "config.seed")
    return tuple((k, str(row[k])) for k in keys if not (isinstance(row[k], float) and np.isnan(row[k])))


def _groups(runs):
    groups: dict[tuple, list] = {}
    for row, art in runs:
        groups.setdefault(_group_key(row), []).append((row, art))
    return list(groups.values())


def _stem(base: str, index: int, count: int) -> str:
    return base if count == 1 else f"{base}_{index + 1}"


def save_figure(fig, suite_dir: Path, stem: str) -> list[Path]:
    """PNG and PDF of a paper figure, cropped to its content, through the report's one figure writer."""
    return report_plots.save_figure(fig, suite_dir, stem, dpi=150, tight=True)


def _cell_edges(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Voronoi cell edges of a regular grid of codes (midpoints between neighbouring code coordinates)."""
    xs, ys = np.unique(codes[:, 0]), np.unique(codes[:, 1])
    return (xs[:-1] + xs[1:]) / 2, (ys[:-1] + ys[1:]) / 2


def _draw_cells(ax, codes: np.ndarray, size: float = 45) -> None:
    edges_x, edges_y = _cell_edges(codes)
    for x in edges_x:
        ax.axvline(x, color="0.6", lw=0.6, ls="--", zorder=1)
    for y in edges_y:
        ax.axhline(y, color="0.6", lw=0.6, ls="--", zorder=1)
    ax.scatter(codes[:, 0], codes[:, 1], s=size, c=ORANGE, edgecolors="k", linewidths=0.6, zorder=4)


def _thinned(positions: np.ndarray, most: int) -> tuple[np.ndarray, float]:
    """A mask keeping every k-th grid coordinate along each axis so at most `most` remain per axis, and the
    spacing of the kept ones."""
    xs, ys = np.unique(positions[:, 0]), np.unique(positions[:, 1])
    stride = max(1, int(np.ceil(max(len(xs), len(ys)) / most)))
    keep_x, keep_y = set(xs[stride // 2::stride].tolist()), set(ys[stride // 2::stride].tolist())
    mask = np.array([x in keep_x and y in keep_y for x, y in positions])
    spacing = float(xs[1] - xs[0]) * stride if len(xs) > 1 else 1.0
    return mask, spacing


def _on_grid(positions: np.ndarray, values: np.ndarray):
    """Values at scattered grid positions (M, 2) as an image Z[y, x] with its axes."""
    xs, ys = np.unique(positions[:, 0]), np.unique(positions[:, 1])
    grid = np.full((len(ys), len(xs)), np.nan)
    grid[np.searchsorted(ys, positions[:, 1]), np.searchsorted(xs, positions[:, 0])] = values
    return xs, ys, grid


# -- A.2, Figure 8 ---------------------------------------------------------------------------------------

def himmelblau_table(runs) -> pd.DataFrame:
    """Distortion and mean objective per estimator and snapshot step, mean ± std over seeds."""
    rows = []
    for row, art in runs:
        for step, state in [(0, art.initial)] + [(s.step, s) for s in art.snapshots]:
            rows.append({"estimator": _estimator(row), "seed": _seed(row), "step": step,
                         "distortion": state.distortion, "objective_codes": state.objective_codes,
                         "objective_points": state.objective_points, "usage": state.usage})
    long = pd.DataFrame(rows)
    if long.empty:
        return long
    table = long.groupby(["estimator", "step"], sort=False).agg(
        seeds=("seed", "nunique"),
        distortion_mean=("distortion", "mean"), distortion_std=("distortion", "std"),
        objective_codes_mean=("objective_codes", "mean"), objective_codes_std=("objective_codes", "std"),
        objective_points_mean=("objective_points", "mean"), objective_points_std=("objective_points", "std"),
        usage_mean=("usage", "mean")).reset_index()
    wide = long.pivot_table(index=["seed", "step"], columns="estimator", values="distortion")
    if {"ste", "rotation"} <= set(wide.columns):
        lower = (wide["rotation"] < wide["ste"]).groupby(level="step").agg(["sum", "count"])
        tied = (wide["rotation"] == wide["ste"]).groupby(level="step").all()
        text = {step: "tie" if tied[step] else f"{int(r['sum'])}/{int(r['count'])}" for step, r in lower.iterrows()}
        table["rotation_lower_distortion_seeds"] = table["step"].map(text)
    order = {name: i for i, name in enumerate(estimator_order(table["estimator"]))}
    return table.sort_values(["estimator", "step"], key=lambda c: c.map(order) if c.name == "estimator" else c,
                             ignore_index=True)


def _markdown(table: pd.DataFrame) -> str:
    def cell(value):
        if isinstance(value, float):
            return "—" if np.isnan(value) else f"{value:.4g}"
        return str(value)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def himmelblau_panels(suite_dir: Path, df: pd.DataFrame) -> list[Path]:
    """Figure 8: rows = estimators, columns = snapshot steps (the first seed of each configuration)."""
    runs = runs_of(suite_dir, df, HimmelblauArtifacts)
    if not runs:
        return []
    plt = _pyplot()
    suite_dir = Path(suite_dir)
    written: list[Path] = []
    groups = _groups(runs)
    for index, group in enumerate(groups):
        seed = min(_seed(row) for row, _ in group)
        chosen = {_estimator(row): art for row, art in group if _seed(row) == seed}
        names = estimator_order(chosen)
        steps = sorted({s.step for art in chosen.values() for s in art.snapshots})
        if not steps:
            continue
        limit = 1.2 * max(art.init_range for art in chosen.values())
        grid = np.linspace(-limit, limit, 241)
        gx, gy = np.meshgrid(grid, grid)
        surface = np.log1p(himmelblau(np.stack([gx, gy], -1)))
        fig, axes = plt.subplots(len(names), len(steps), figsize=(3.3 * len(steps), 3.3 * len(names)),
                                 squeeze=False)
        for r, name in enumerate(names):
            art = chosen[name]
            initial = np.asarray(art.initial.points)
            by_step = {s.step: s for s in art.snapshots}
            minima = np.asarray(art.minima)
            for c, step in enumerate(steps):
                ax = axes[r][c]
                ax.contour(gx, gy, surface, levels=18, cmap="coolwarm", linewidths=0.7, zorder=0)
                ax.scatter(initial[:, 0], initial[:, 1], s=5, c="tab:green", alpha=0.45, lw=0, zorder=2,
                           label="initial points")
                snap = by_step.get(step)
                if snap is not None:
                    points, codebook = np.asarray(snap.points), np.asarray(snap.codebook)
                    ax.scatter(points[:, 0], points[:, 1], s=5, c="tab:blue", lw=0, zorder=3, label="updated points")
                    ax.scatter(codebook[:, 0], codebook[:, 1], s=50, facecolors="none", edgecolors=ORANGE,
                               linewidths=1.6, zorder=4, label="codebook")
                    ax.set_title(f"{name}, {step} updates\ndistortion {snap.distortion:.3f}, "
                                 f"mean f(q) {snap.objective_codes:.2f}", fontsize=8)
                ax.scatter(minima[:, 0], minima[:, 1], marker="+", c="k", s=40, lw=0.8, zorder=5, label="minima")
                ax.set_xlim(-limit, limit)
                ax.set_ylim(-limit, limit)
                ax.set_aspect("equal")
                ax.tick_params(labelsize=7)
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False,
                   bbox_to_anchor=(0.5, -0.02), markerscale=2)
        fig.suptitle(f"Himmelblau's function with vector quantization (paper A.2, Figure 8), seed {seed}",
                     fontsize=10)
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        written += save_figure(fig, suite_dir, _stem("himmelblau_panels", index, len(groups)))
        table = himmelblau_table(group)
        stem = _stem("himmelblau_table", index, len(groups))
        store.atomic_write_text(suite_dir / f"{stem}.csv", table.to_csv(index=False))
        store.atomic_write_text(suite_dir / f"{stem}.md", _markdown(table))
        written += [suite_dir / f"{stem}.csv", suite_dir / f"{stem}.md"]
    return written


# -- A.4, Figures 4 and 10 -------------------------------------------------------------------------------

def _draw_update(ax, art: ShiftCosineArtifacts) -> None:
    """Figure 4 / 10: codes with their update (red), points (green) and the points after the update (blue)."""
    codes, points = np.asarray(art.codes), np.asarray(art.points)
    after = points + np.asarray(art.estimator_updates)
    code_steps = np.asarray(art.code_updates)
    ax.scatter(points[:, 0], points[:, 1], s=8, c="tab:green", lw=0, label="points")
    ax.scatter(after[:, 0], after[:, 1], s=8, c="tab:blue", lw=0, label="after the update")
    ax.scatter(codes[:, 0], codes[:, 1], s=60, c=ORANGE, edgecolors="k", linewidths=0.6, zorder=4, label="codes")
    ax.quiver(codes[:, 0], codes[:, 1], code_steps[:, 0], code_steps[:, 1], color="red", angles="xy",
              scale_units="xy", scale=1, width=0.012, zorder=5)
    centre = art.shift
    ax.set_xlim(centre - 1.7, centre + 1.7)
    ax.set_ylim(centre - 1.7, centre + 1.7)
    ax.set_aspect("equal")
    ax.set_title(f"{art.estimator}, shift {centre:g}\nmean cos to STE {art.update_cosine_ste:.4f}", fontsize=8)
    ax.tick_params(labelsize=7)


def shift_cosine(suite_dir: Path, df: pd.DataFrame) -> list[Path]:
    """A.4: mean cosine (and norm ratio) between each estimator's update and the STE's against the shift."""
    runs = runs_of(suite_dir, df, ShiftCosineArtifacts)
    if not runs:
        return []
    plt = _pyplot()
    rows = pd.DataFrame([{"estimator": _estimator(row), "shift": float(row["config.model.shift"]),
                          "cosine": art.update_cosine_ste, "norm_ratio": art.update_norm_ratio}
                         for row, art in runs])
    names = estimator_order(rows["estimator"])
    featured = next((n for n in names if n == "rotation"), next((n for n in names if n != "ste"), names[0]))
    shifts = sorted(rows["shift"].unique())
    shown = list(dict.fromkeys([shifts[0], 10.0 if 10.0 in shifts else shifts[-1]]))
    examples = {}
    for row, art in sorted(runs, key=lambda item: _seed(item[0])):
        key = float(row["config.model.shift"])
        if _estimator(row) == featured and key in shown and key not in examples:
            examples[key] = art
    panels = 2 + len(examples)
    fig, axes = plt.subplots(1, panels, figsize=(3.6 * panels, 3.4), squeeze=False)
    for ax, column, label in ((axes[0][0], "cosine", "mean cos(update, STE update)"),
                              (axes[0][1], "norm_ratio", "mean ‖update‖ / ‖STE update‖")):
        for name in names:
            stats = rows[rows["estimator"] == name].groupby("shift")[column].agg(["mean", "std"]).sort_index()
            ax.errorbar(stats.index, stats["mean"], yerr=stats["std"].fillna(0.0), marker="o", ms=4, capsize=2,
                        label=name)
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlabel("shift d per dimension (symlog)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7)
    axes[0][0].set_title("A.4: far from the origin the rotation trick tends to the STE", fontsize=8)
    for ax, shift in zip(axes[0][2:], sorted(examples)):
        _draw_update(ax, examples[shift])
    if examples:
        axes[0][2].legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    return save_figure(fig, suite_dir, "shift_cosine")


# -- §3, Figure 2 ----------------------------------------------------------------------------------------

def gradient_fields(suite_dir: Path, df: pd.DataFrame) -> list[Path]:
    """Figure 2: rows = functions, columns = exact ∇f(e) and each estimator's field (direction; colour = log10 ‖·‖)."""
    runs = runs_of(suite_dir, df, GradientFieldArtifacts)
    if not runs:
        return []
    plt = _pyplot()
    by_function: dict[str, dict[str, dict]] = {}
    for row, art in sorted(runs, key=lambda item: _seed(item[0])):
        by_function.setdefault(art.function, {}).setdefault(_estimator(row), art)
    functions = [f for f in ("quadratic", "log_tanh") if f in by_function] + sorted(
        f for f in by_function if f not in ("quadratic", "log_tanh"))
    names = estimator_order(n for f in functions for n in by_function[f])
    columns = ["exact"] + names
    fig, axes = plt.subplots(len(functions), len(columns), figsize=(3.6 * len(columns), 3.6 * len(functions)),
                             squeeze=False)
    for r, function in enumerate(functions):
        arts = by_function[function]
        any_art = next(iter(arts.values()))
        positions, codes = np.asarray(any_art.positions), np.asarray(any_art.codes)
        fields = {"exact": np.asarray(any_art.exact_field)}
        fields.update({name: np.asarray(art.estimator_field) for name, art in arts.items()})
        keep, spacing = _thinned(positions, MAX_ARROWS)
        magnitudes = np.concatenate([np.linalg.norm(v, axis=1) for v in fields.values()])
        logs = np.log10(np.clip(magnitudes, 1e-6, None))
        vmin, vmax = np.percentile(logs, 2), np.percentile(logs, 98)
        for c, column in enumerate(columns):
            ax = axes[r][c]
            _draw_cells(ax, codes, size=22)
            if column in fields:
                field = fields[column][keep]
                norm = np.linalg.norm(field, axis=1, keepdims=True)
                unit = field / np.clip(norm, 1e-12, None)
                quiver = ax.quiver(positions[keep, 0], positions[keep, 1], unit[:, 0], unit[:, 1],
                                   np.log10(np.clip(norm[:, 0], 1e-6, None)), cmap="viridis", clim=(vmin, vmax),
                                   angles="xy", pivot="mid", scale=1.15 / spacing, scale_units="xy", width=0.006,
                                   zorder=3)
                extra = "\n∇f(e)"
                if column != "exact":
                    art = arts[column]
                    extra = (f"\ncos to exact {art.field_cosine_exact:.3f}, "
                             f"cell spread {art.field_within_cell_spread:.3f}")
                ax.set_title(f"{FUNCTION_LABELS.get(function, function)}: {column}{extra}", fontsize=7)
            else:
                ax.set_title(f"{FUNCTION_LABELS.get(function, function)}: {column} (no run)", fontsize=8)
            extent = any_art.extent
            ax.set_xlim(-extent, extent)
            ax.set_ylim(-extent, extent)
            ax.set_aspect("equal")
            ax.tick_params(labelsize=7)
        fig.colorbar(quiver, ax=list(axes[r]), shrink=0.8, label="log10 ‖gradient‖")
    fig.suptitle("Gradient at e: exact vs transported through the quantizer (paper §3, Figure 2)", fontsize=10)
    return save_figure(fig, suite_dir, "gradient_fields")


# -- §4.3, Figures 4-5 -----------------------------------------------------------------------------------

def push_pull(suite_dir: Path, df: pd.DataFrame) -> list[Path]:
    """Figures 4-5: change of ‖e − q‖ after one step, rows = estimators, columns = code step along / against q."""
    runs = runs_of(suite_dir, df, PushPullArtifacts)
    if not runs:
        return []
    plt = _pyplot()
    from matplotlib.colors import LinearSegmentedColormap, TwoSlopeNorm

    chosen: dict[str, dict] = {}
    for row, art in sorted(runs, key=lambda item: _seed(item[0])):
        chosen.setdefault(_estimator(row), art)
    names = estimator_order(chosen)
    directions = DIRECTIONS
    values = np.concatenate([np.asarray(chosen[n].change(d)) / chosen[n].step_size for n in names for d in directions])
    limit = float(np.percentile(np.abs(values), 95)) or 1.0
    cmap = LinearSegmentedColormap.from_list("push_pull", [GREEN, IVORY, BLUE])
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit)
    fig, axes = plt.subplots(len(names), 2, figsize=(8.2, 3.7 * len(names)), squeeze=False)
    for r, name in enumerate(names):
        art = chosen[name]
        positions, codes = np.asarray(art.positions), np.asarray(art.codes)
        for c, direction in enumerate(directions):
            ax = axes[r][c]
            xs, ys, grid = _on_grid(positions, np.asarray(art.change(direction)) / art.step_size)
            mesh = ax.pcolormesh(xs, ys, grid, cmap=cmap, norm=norm, shading="nearest", zorder=0)
            _draw_cells(ax, codes)
            sign = 1.0 if direction == "along" else -1.0
            unit = sign * codes / np.linalg.norm(codes, axis=1, keepdims=True)
            code_xs = np.unique(codes[:, 0])
            cell = float(np.diff(code_xs).min()) if len(code_xs) > 1 else float(xs[-1] - xs[0])
            ax.quiver(codes[:, 0], codes[:, 1], unit[:, 0], unit[:, 1], color="red", angles="xy",
                      scale_units="xy", scale=1.0 / (0.35 * cell), width=0.01, zorder=5)
            ax.set_title(f"{name}: code steps {direction} q\nmean change: wide angle "
                         f"{art.mean_change(direction, 'wide'):+.3f}, narrow "
                         f"{art.mean_change(direction, 'narrow'):+.3f}", fontsize=7)
            ax.set_xlim(xs[0] - (xs[1] - xs[0]) / 2, xs[-1] + (xs[1] - xs[0]) / 2)
            ax.set_ylim(ys[0] - (ys[1] - ys[0]) / 2, ys[-1] + (ys[1] - ys[0]) / 2)
            ax.set_aspect("equal")
            ax.tick_params(labelsize=7)
    fig.colorbar(mesh, ax=axes.ravel().tolist(), shrink=0.7,
                 label="change of ‖e − q‖ per unit code step (blue: pushed, green: pulled)")
    fig.suptitle("Push and pull within Voronoi cells after one update (paper §4.3, Figures 4-5)", fontsize=10)
    return save_figure(fig, suite_dir, "push_pull")


FIGURES: dict[str, Callable[[Path, pd.DataFrame], list[Path]]] = {
    "himmelblau_panels": himmelblau_panels,
    "shift_cosine": shift_cosine,
    "gradient_fields": gradient_fields,
    "push_pull": push_pull,
}
