"""Training curves as a PNG (matplotlib, headless): losses, D's outputs, and every other logged metric.

Each panel shows the raw values as a thin line and an exponentially smoothed line over them (as
TensorBoard's smoothing slider does), so both the trend and the noise are visible.
"""
from __future__ import annotations

import io

from ganforge.reporting.rundata import metric_group, numeric_keys, series

#: Panel titles, in the order the panels appear; the "metrics" group gets one panel per key.
PANELS = {"loss": "losses (G and D)", "D": "D(x) and D(G(z))", "lr": "learning rates",
          "grad": "gradient norms", "speed": "images / s"}
LABELS = {"loss_d": "D loss", "loss_g": "G loss", "d_x": "D(x)", "d_g_z": "D(G(z)) before D step",
          "d_g_z2": "D(G(z)) after D step", "lr_g": "G", "lr_d": "D", "grad_norm_g": "G", "grad_norm_d": "D"}


def smooth(values: list[float], weight: float = 0.8) -> list[float]:
    """Exponential moving average with TensorBoard's debiasing (the first points are not pulled to 0)."""
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = weight * avg + (1 - weight) * v
        out.append(avg / (1 - weight ** i))
    return out


def panels(records: list[dict]) -> list[tuple[str, list[str]]]:
    """(title, keys) of each panel, for the keys these records hold."""
    keys = numeric_keys(records)
    found = [(title, [k for k in keys if metric_group(k) == group]) for group, title in PANELS.items()]
    out = [(title, ks) for title, ks in found if ks]
    # Other metrics get a panel each, unless they never changed (a switched-off strategy's 0.0 every
    # step): a flat line says nothing the metrics table does not.
    out += [(k, [k]) for k in keys if metric_group(k) == "metrics" and len(set(series(records, k)[1])) > 1]
    return out


def render_curves(records: list[dict], smoothing: float = 0.8) -> bytes | None:
    """The curves as PNG bytes, or None when nothing has been logged yet."""
    layout = panels(records)
    if not layout:
        return None
    import matplotlib
    matplotlib.use("Agg")  # no display: training machines and CI have none
    from matplotlib.figure import Figure

    ncols = min(3, len(layout))
    nrows = -(-len(layout) // ncols)
    # A Figure made directly (not pyplot) is never registered globally, so nothing leaks across refreshes.
    # Fixed margins rather than a layout engine: constrained layout doubled the time of a refresh.
    height = 3.4 * nrows
    fig = Figure(figsize=(5.2 * ncols, height), dpi=90)
    fig.subplots_adjust(left=0.06 if ncols > 1 else 0.14, right=0.98, bottom=0.55 / height, top=1 - 0.55 / height,
                        wspace=0.25, hspace=0.8 / 3.4 * 1.5)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, (title, keys) in zip(axes, layout):
        for i, key in enumerate(keys):
            steps, values = series(records, key)
            colour = f"C{i}"
            ax.plot(steps, values, color=colour, alpha=0.3, linewidth=0.8)
            ax.plot(steps, smooth(values, smoothing), color=colour, linewidth=1.8, label=LABELS.get(key, key))
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=8)
    for ax in axes[len(layout):]:
        ax.set_visible(False)
    fig.suptitle(f"faint: raw, bold: smoothed (EMA {smoothing})", fontsize=9, color="0.4")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()

