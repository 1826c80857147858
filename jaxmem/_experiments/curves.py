"""Figures of training on data: loss curves on log axes, one panel per target."""

import numpy as np


def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        try:
            matplotlib.use("Agg")
        except Exception:  # pragma: no cover - a backend already in use stays
            pass
    import matplotlib.pyplot as plt

    return plt


PANEL_TITLES = {"exp": "exponential memory", "powerlaw": "polynomial memory", "bump": "a bump of memory",
                "airy": "Airy memory", "plateau": "the plateau target", "lorenz96": "Lorenz-96 (nonlinear)"}


def plot_training(rows, path=None, *, title=None, test=True):
    """Loss curves of `jaxmem train` rows (dicts with the train.csv columns) on log axes: one
    panel per (kernel, parameter), one colour per (width, learning rate), one thin line per
    seed; the training loss solid, the test loss dashed. Step 0 (not on a log axis) is left out.
    Returns the figure (saved to `path` if given)."""
    plt = _pyplot()
    panels = list(dict.fromkeys((r["kernel"], r["param_name"], r["param"]) for r in rows))
    n = max(len(panels), 1)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 3.8), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (kernel, pname, p) in zip(axes[0], panels):
        mine = [r for r in rows if (r["kernel"], r["param_name"], r["param"]) == (kernel, pname, p)]
        groups = list(dict.fromkeys((r["width"], r["lr"]) for r in mine))
        for g, (m, lr) in enumerate(groups):
            c = colors[g % len(colors)]
            seeds = sorted({r["seed"] for r in mine if (r["width"], r["lr"]) == (m, lr)})
            for k, seed in enumerate(seeds):
                rs = sorted((r for r in mine if (r["width"], r["lr"], r["seed"]) == (m, lr, seed)),
                            key=lambda r: r["step"])
                steps = np.array([r["step"] for r in rs], float)
                on = steps >= 1
                label = f"m={m}, lr={lr:g}" if k == 0 and len(groups) > 1 else ("train" if k == 0 else None)
                ax.loglog(steps[on], np.array([r["train_loss"] for r in rs], float)[on], color=c, lw=1.2,
                          alpha=0.85, label=label)
                if test:
                    tl = np.array([r["test_loss"] for r in rs], float)[on]
                    if np.isfinite(tl).any():
                        ax.loglog(steps[on], tl, "--", color=c, lw=0.9, alpha=0.7,
                                  label="test" if k == 0 and len(groups) == 1 else None)
        desc = PANEL_TITLES.get(kernel, kernel)
        model = mine[0]["model"] if mine else ""
        ax.set_title(f"{desc}\n{kernel}, {pname} = {p:g}, {model} RNN", fontsize=10)
        ax.set_xlabel("iteration")
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("loss (mean squared error)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


def plot_theory(rows, path=None):
    """Escape iterations of gradient descent on data against gradient descent on the exact loss,
    per lag (log axis): parameters moved by δ (left), loss down by δ (right). Returns the figure."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    lags = np.array([r["lag"] for r in rows], float)
    for ax, col, name in zip(axes, ("steps_param", "steps_loss"), ("parameters moved by δ", "loss down by δ")):
        data = np.array([r[f"data_{col}"] for r in rows], float)
        exact = np.array([r[f"exact_{col}"] for r in rows], float)
        data[data < 0], exact[exact < 0] = np.nan, np.nan
        ax.semilogy(lags, exact, "o-", color="k", label="exact loss (theory)")
        ax.semilogy(lags, data, "s--", color="tab:orange", label="sampled data")
        ax.set_xlabel("memory L = 1/ω")
        ax.set_title(f"escape: {name}", fontsize=10)
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("gradient-descent iterations")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig
