"""The summary table (figure, baseline, ratio, target, pass/fail) and the
chart (one panel per benchmark, ours vs baseline) of a `python -m bench` run."""

from __future__ import annotations

from typing import Any

OURS = "#1f77b4"
BASE = "#9e9e9e"
EXTRA = "#6baed6"
PASS = "#2e7d32"
FAIL = "#c62828"


def finish_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add the ratio (figure / baseline) and defaults to every row."""
    for row in rows:
        figure, baseline = row.get("figure"), row.get("baseline")
        row["ratio"] = round(figure / baseline, 3) if figure is not None and baseline else None
        row.setdefault("target", None)
        row.setdefault("pass", None)
    return rows


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of every row."""
    head = ["benchmark", "metric", "figure", "baseline", "ratio", "target", "result"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        unit = r.get("unit") or ""
        unit = unit if unit.startswith("/") or not unit else f" {unit}"
        result = {True: "PASS", False: "FAIL", None: "-"}[r["pass"]]
        baseline = f"{_fmt(r['baseline'])}{unit} ({r['baseline_name']})" if r["baseline"] is not None else "-"
        lines.append(
            "| "
            + " | ".join(
                [
                    r["benchmark"],
                    r["metric"],
                    f"{_fmt(r['figure'])}{unit}",
                    baseline,
                    f"{r['ratio']:.3f}x" if r["ratio"] is not None else "-",
                    r["target"] or "-",
                    result,
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def _verdict(rows: list[dict[str, Any]], bench: str) -> tuple[str, str]:
    checks = [r for r in rows if r["benchmark"] == bench and r["pass"] is not None]
    if not checks:
        return "", "black"
    ok = all(r["pass"] for r in checks)
    return ("PASS" if ok else "FAIL"), (PASS if ok else FAIL)


def _bars(ax: Any, groups: list[str], series: list[tuple[str, list[float | None], str]], fmt: str) -> None:
    """Grouped bars with their values written on top."""
    n = len(series)
    width = 0.8 / n
    for i, (label, values, color) in enumerate(series):
        xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
        heights = [v if v is not None else 0 for v in values]
        bars = ax.bar(xs, heights, width, label=label, color=color)
        for bar, v in zip(bars, values, strict=True):
            if v is not None:
                ax.annotate(
                    format(v, fmt),
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    xytext=(0, 1),
                    textcoords="offset points",
                )
    ax.set_xticks(range(len(groups)), groups, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    # Head room above the tallest bar for the legend and the notes.
    top = max((v for _, values, _ in series for v in values if v is not None), default=1.0)
    ax.set_ylim(0, top * 1.45)


def _legend(ax: Any) -> None:
    ax.legend(fontsize=7, loc="upper left")


def _target_line(ax: Any, y: float, label: str, xmin: float | None = None, xmax: float | None = None) -> None:
    """A dashed target line (across the panel, or over one group), in the legend."""
    if xmin is None or xmax is None:
        ax.axhline(y, color=FAIL, linestyle="dashed", linewidth=1, label=label)
    else:
        ax.hlines(y, xmin, xmax, colors=FAIL, linestyles="dashed", linewidth=1, label=label)
    bottom, top = ax.get_ylim()
    if y * 1.3 > top:
        ax.set_ylim(bottom, y * 1.45)


def _title(ax: Any, text: str, rows: list[dict[str, Any]], bench: str, detail: str) -> None:
    verdict, color = _verdict(rows, bench)
    ax.set_title(text, fontsize=10, loc="left", fontweight="bold")
    if verdict:
        ax.set_title(verdict, fontsize=10, loc="right", color=color, fontweight="bold")
    ax.text(0.99, 0.97, detail, transform=ax.transAxes, ha="right", va="top", fontsize=7, color="#333333")


def _error_panel(ax: Any, name: str, error: str) -> None:
    ax.set_title(name, fontsize=10, loc="left", fontweight="bold")
    ax.text(0.5, 0.5, "failed:\n" + error[-200:], ha="center", va="center", fontsize=7, wrap=True, color=FAIL)
    ax.set_axis_off()


def chart(results: dict[str, Any], rows: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    b = results["benchmarks"]
    fig, axes = plt.subplots(2, 3, figsize=(16, 9.5))
    (ax_rps, ax_lat, ax_cold), (ax_create, ax_pss, ax_fit) = axes
    mode = "quick" if results["meta"]["quick"] else "full"
    fig.suptitle(
        f"faas benchmarks ({mode}, {results['meta']['timestamp']}; {results['meta']['host']['cpus']} CPUs): "
        "ours vs a baseline measured in the same run",
        fontsize=12,
    )

    warm = b.get("warm")
    if warm and "error" not in warm:
        c1, c32 = warm["c1"], warm["c32"]
        _bars(
            ax_rps,
            ["1 connection", "32 connections"],
            [
                ("faas /function/hello", [c1["faas"]["rps"], c32["faas"]["rps"]], OURS),
                ("bare aiohttp+uvloop", [c1["bare"]["rps"], c32["bare"]["rps"]], BASE),
            ],
            ",.0f",
        )
        _legend(ax_rps)
        ax_rps.set_ylabel("requests/s (median of rounds)")
        _title(
            ax_rps,
            "Warm throughput",
            rows,
            "warm",
            f"target @32: >= 0.6x bare; is {c32['rps_ratio']:.2f}x\n@1: {c1['rps_ratio']:.2f}x",
        )
        _bars(
            ax_lat,
            ["p50 @1", "p99 @1", "p50 @32", "p99 @32"],
            [
                (
                    "faas",
                    [
                        c1["faas"]["p50_ms"],
                        c1["faas"]["p99_ms"],
                        c32["faas"]["p50_ms"],
                        c32["faas"]["p99_ms"],
                    ],
                    OURS,
                ),
                (
                    "bare",
                    [
                        c1["bare"]["p50_ms"],
                        c1["bare"]["p99_ms"],
                        c32["bare"]["p50_ms"],
                        c32["bare"]["p99_ms"],
                    ],
                    BASE,
                ),
            ],
            ".3g",
        )
        ax_lat.set_yscale("log")
        low = min(c1["bare"]["p50_ms"], c1["faas"]["p50_ms"])
        high = max(c32["faas"]["p99_ms"], c32["bare"]["p99_ms"], c1["faas"]["p99_ms"])
        ax_lat.set_ylim(low / 2, high * 12)
        _legend(ax_lat)
        ax_lat.set_ylabel("latency, ms (log scale)")
        _title(
            ax_lat,
            "Warm latency (wrk)",
            rows,
            "warm",
            f"target: p50 @1 within 100 µs of bare; is +{c1['p50_overhead_us']:g} µs",
        )
    else:
        _error_panel(ax_rps, "Warm throughput", (warm or {}).get("error", "not run"))
        _error_panel(ax_lat, "Warm latency", (warm or {}).get("error", "not run"))

    cold = b.get("cold")
    if cold and "error" not in cold:
        f, p = cold["faas"], cold["fresh_python"]
        _bars(
            ax_cold,
            ["p50", "p99"],
            [
                ("faas first call (end to end)", [f["p50_ms"], f["p99_ms"]], OURS),
                ("fresh python -c 'print(1)'", [p["p50_ms"], p["p99_ms"]], BASE),
            ],
            ".1f",
        )
        _target_line(ax_cold, 5.0, "target (p50 5 ms, p99 15 ms)", -0.45, 0.45)
        _target_line(ax_cold, 15.0, "_", 0.55, 1.45)
        _legend(ax_cold)
        ax_cold.set_ylabel("ms")
        _title(
            ax_cold,
            f"Cold start ({cold['functions']} functions)",
            rows,
            "cold",
            "one call per function, 20 ms apart\n(4 pre-warmed blanks, refilled in background)",
        )
    else:
        _error_panel(ax_cold, "Cold start", (cold or {}).get("error", "not run"))

    creation = b.get("creation")
    if creation and "error" not in creation:
        ks = [s["k"] for s in creation["sandboxes"]]
        base_by_k = {s["k"]: s["per_s"] for s in creation["fork_exec_python"]}
        _bars(
            ax_create,
            [f"K={k} in flight" for k in ks],
            [
                ("isolated sandboxes", [s["per_s"] for s in creation["sandboxes"]], OURS),
                ("fork+exec python -c pass", [base_by_k.get(k) for k in ks], BASE),
            ],
            ".0f",
        )
        _target_line(ax_create, 200, "target 200/s")
        _legend(ax_create)
        ax_create.set_ylabel("created per second (sustained)")
        best = creation["best"]
        _title(
            ax_create,
            "Sandbox creation rate",
            rows,
            "creation",
            f"best K={best['k']}: {best['per_s']:g}/s over {best['duration_s']:g} s\n"
            f"spawn p50 {best['spawn_p50_ms']:g} ms",
        )
    else:
        _error_panel(ax_create, "Sandbox creation rate", (creation or {}).get("error", "not run"))

    density = b.get("density")
    if density and "error" not in density:
        base = density["baseline_python"]
        _bars(
            ax_pss,
            ["PSS", "USS (private)", "RSS"],
            [
                (
                    "idle warm sandbox (mean)",
                    [density["pss_mean_mib"], density["uss_mean_mib"], density["rss_mean_mib"]],
                    OURS,
                ),
                ("fresh python, sleeping", [base["pss_mib"], base["uss_mib"], base["rss_mib"]], BASE),
            ],
            ".2f",
        )
        _legend(ax_pss)
        ax_pss.set_ylabel("MiB per process")
        _title(
            ax_pss,
            f"Memory per idle sandbox ({density['sandboxes_found']})",
            rows,
            "density",
            f"PSS median {density['pss_median_mib']:g} MiB, total {density['pss_total_mib']:g} MiB\n"
            f"MemAvailable drop {density['memavailable_drop_per_sandbox_mib']:g} MiB/sandbox",
        )
        _bars(
            ax_fit,
            ["in 24 GiB", f"in MemTotal - 2 GiB ({density['memtotal_gib'] - 2:.1f} GiB)"],
            [
                (
                    "sandboxes (by mean PSS)",
                    [density["fits_in_24gib"], density["fits_in_memtotal_minus_2gib"]],
                    OURS,
                ),
                (
                    "sandboxes (by MemAvailable drop, incl. kernel memory)",
                    [
                        density["fits_in_24gib_by_memavailable_drop"],
                        density.get("fits_in_memtotal_minus_2gib_by_memavailable_drop"),
                    ],
                    EXTRA,
                ),
                (
                    "fresh sleeping pythons (by PSS)",
                    [base["fits_in_24gib"], base.get("fits_in_memtotal_minus_2gib")],
                    BASE,
                ),
            ],
            ",.0f",
        )
        _target_line(ax_fit, 2000, "target 2000 in 24 GiB")
        _legend(ax_fit)
        ax_fit.set_ylabel("idle warm sandboxes that fit")
        _title(ax_fit, "Density (projected)", rows, "density", "")
    else:
        _error_panel(ax_pss, "Memory per idle sandbox", (density or {}).get("error", "not run"))
        _error_panel(ax_fit, "Density", (density or {}).get("error", "not run"))

    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)
