"""Plots for the report: rate-limited throughput over time, latency CDFs, RSS vs size.

matplotlib is optional (the ``bench`` extra): without it the report says so and the
tables stand alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["make_plots"]


def make_plots(doc: dict[str, Any], out_dir: Path) -> tuple[list[str], str | None]:
    """Write the PNGs the results allow; returns (file names, a note if skipped)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [], "Plots skipped: matplotlib is not installed (pip install matplotlib)."
    written: list[str] = []
    workloads = doc["workloads"]

    rate = workloads.get("ratelimit")
    if rate and rate.get("raw"):
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
        for index, (label, res) in enumerate(rate["raw"].items()):
            if res.get("status") != "ok":
                continue
            color = f"C{index}"  # the same contender has the same colour in both panels
            ok_times = sorted(res.get("ok_times") or [])
            top.plot(ok_times, range(1, len(ok_times) + 1), color=color, label=label)
            limited = sorted(res.get("rate_limited_times") or [])
            bottom.plot(
                [0.0, *limited],
                range(len(limited) + 1),
                color=color,
                drawstyle="steps-post",
                label=f"{label}: {len(limited)}",
            )
        params = rate["params"]
        horizon = max(
            (
                max(r.get("ok_times") or [0])
                for r in rate["raw"].values()
                if r.get("status") == "ok"
            ),
            default=0,
        )
        ts = [i * horizon / 100 for i in range(101)]
        top.plot(
            ts,
            [params["rpm"] + params["rpm"] / 60 * t for t in ts],
            "k--",
            label="allowed (bucket)",
        )
        top.set_ylabel("requests answered (cumulative)")
        bottom.set_ylabel("429s received (cumulative)")
        bottom.set_xlabel("seconds since start")
        top.legend(fontsize=8)
        bottom.legend(fontsize=8)
        top.set_title(f"Rate-limited batch: {params['rpm']} rpm budget, bucket starts full")
        fig.tight_layout()
        fig.savefig(out_dir / "ratelimit.png", dpi=100)
        plt.close(fig)
        written.append("ratelimit.png")

    panels = [
        (key, workloads[key])
        for key in ("nonstream", "schedule")
        if workloads.get(key, {}).get("raw")
    ]
    if panels:
        fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
        for ax, (key, w) in zip(axes[0], panels, strict=True):
            for label, res in w["raw"].items():
                lat = sorted(res.get("latencies") or [])
                if res.get("status") == "ok" and lat:
                    ax.plot(
                        [x * 1000 for x in lat],
                        [(i + 1) / len(lat) for i in range(len(lat))],
                        label=label,
                    )
            ax.set_xscale("log")
            ax.set_xlabel("latency (ms, log)")
            ax.set_ylabel("share of requests")
            ax.set_title(f"Latency CDF: {key}")
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / "latency_cdf.png", dpi=100)
        plt.close(fig)
        written.append("latency_cdf.png")

    memory = workloads.get("memory")
    if memory and memory.get("raw"):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        series: dict[str, list[tuple[int, float]]] = {}
        for res in memory["raw"].values():
            if res.get("status") == "ok":
                series.setdefault(res["contender_label"], []).append(
                    (res["queued"], res["peak_rss_bytes"] / 2**20)
                )
        for label, points in series.items():
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label=label)
        ax.set_xscale("log")
        ax.set_xlabel("requests queued (log)")
        ax.set_ylabel("peak RSS (MiB)")
        ax.set_title("Peak RSS against job size")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / "memory.png", dpi=100)
        plt.close(fig)
        written.append("memory.png")
    return written, None
