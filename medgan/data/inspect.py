"""Summaries of a :class:`SliceSet`, for ``medgan data inspect`` (text or JSON)."""

from __future__ import annotations

from typing import Any

import numpy as np

from medgan.data.slices import SliceSet
from medgan.data.splits import SPLITS


def summarize(ss: SliceSet) -> dict[str, Any]:
    """A JSON-ready summary: format, counts per split and label, shape, intensity ranges, volume facts."""
    m = ss.manifest
    per_split = {s: int((m["split"] == s).sum()) for s in SPLITS}
    labels = m["label_name"].astype(str)
    order = list(ss.classes) + sorted(set(labels) - set(ss.classes))
    per_label = {name: int((labels == name).sum()) for name in order if (labels == name).any()}
    per_split_label = {
        s: {name: int(((m["split"] == s) & (labels == name)).sum()) for name in per_label} for s in SPLITS
    }
    modes = sorted(set(m["intensity_mode"].dropna().astype(str)))
    out: dict[str, Any] = {
        "format": ss.source_format,
        "n_slices": len(ss),
        "shape": list(ss.shape),
        "per_split": per_split,
        "per_label": per_label,
        "per_split_label": per_split_label,
        "classes": list(ss.classes),
        "intensity_range": [float(ss.images.min()), float(ss.images.max())] if len(ss) else None,
        "intensity_mode": modes[0] if len(modes) == 1 else modes,
        "raw_intensity_range": ss.info.get("raw_range"),
        "n_patients": int(m["patient_id"].dropna().nunique()),
        "cross_split_duplicates": ss.info.get("cross_split_duplicates", 0),
        "warnings": list(ss.info.get("warnings", [])),
    }
    if (
        "near_duplicate_images" in ss.info
    ):  # near-duplicate images found (and, in assigned splits, kept together)
        out["near_duplicates"] = {
            "images": ss.info["near_duplicate_images"],
            "groups": ss.info["near_duplicate_groups"],
            "identical_pairs": int(m["sha1"].duplicated().sum()),
            "cross_split_groups": ss.info.get("cross_split_near_duplicates", 0),
        }
    if ss.masks is not None:  # lesion masks kept with their slices (image folders' mask column, volumes)
        px = ss.masks.reshape(len(ss), -1).sum(1)
        out["masks"] = {
            "n_slices": len(ss),
            "with_lesion": int((px > 0).sum()),
            "mean_lesion_px": float(px.mean()),
        }
    for key in ("file", "task", "n_volumes", "n_dropped_empty", "n_files"):
        if key in ss.info:
            out[key] = ss.info[key]
    if "n_volumes" in ss.info:
        out["n_series"] = int(m["series_uid"].dropna().nunique()) if m["series_uid"].notna().any() else None
        sp = m[["spacing_row", "spacing_col", "slice_thickness"]].dropna()
        if len(sp):
            out["spacing_mm"] = [float(x) for x in np.round(sp.iloc[0].to_numpy(dtype=float), 4)]
        shapes = sorted({(int(r), int(c)) for r, c in zip(m["rows"], m["cols"], strict=True)})
        out["native_shape"] = list(shapes[0]) if len(shapes) == 1 else [list(s) for s in shapes]
        if ss.info.get("has_mask"):
            lesion = int((m["label"] == 1).sum())
            out["lesion_slices"] = lesion
            out["healthy_slices"] = int((m["label"] == 0).sum())
            if ss.info.get("n_volumes") == 1:
                idx = m.loc[m["label"] == 1, "slice_index"].dropna().astype(int).tolist()
                out["lesion_slice_index"] = sorted(idx)
    return out


def _duplicate_lines(nd: dict[str, Any] | None) -> list[str]:
    """The near-duplicate count, and whether each group stayed in one split."""
    if not nd:
        return []
    if nd["cross_split_groups"]:
        return [
            f"duplicates   {nd['images']} images in {nd['groups']} near-duplicate groups;"
            f" {nd['cross_split_groups']} groups span the given splits"
        ]
    return [
        f"duplicates   {nd['images']} images in {nd['groups']} near-duplicate groups"
        f" ({nd['identical_pairs']} identical), each group in one split"
    ]


def render_text(summary: dict[str, Any], source: str) -> str:
    """A compact human-readable report of :func:`summarize`'s output."""
    lines = [f"source       {source}", f"format       {summary['format']}"]
    c, h, w = summary["shape"]
    lines.append(f"slices       {summary['n_slices']}  shape (C, H, W) = ({c}, {h}, {w})")
    native = summary.get("native_shape")
    if native and isinstance(native[0], int):
        lines.append(f"native       {native[0]} x {native[1]} px")
    elif native:
        lines.append("native       " + ", ".join(f"{r} x {c}" for r, c in native) + " px")
    if summary.get("spacing_mm"):
        r, cc, t = summary["spacing_mm"]
        lines.append(f"spacing      {r:g} x {cc:g} mm, slice {t:g} mm")
    for key in ("n_volumes", "n_series", "n_patients", "n_files"):
        if summary.get(key):
            lines.append(f"{key[2:]:<12} {summary[key]}")
    split_txt = "  ".join(f"{k} {v}" for k, v in summary["per_split"].items())
    lines.append(f"splits       {split_txt}")
    names = list(summary["per_label"])
    width = max([len(n) for n in names] + [5])
    lines.append(f"  {'label':<{width}}  " + "  ".join(f"{s:>6}" for s in summary["per_split"]) + "   total")
    for n in names:
        cells = "  ".join(f"{summary['per_split_label'][s][n]:>6}" for s in summary["per_split"])
        lines.append(f"  {n:<{width}}  {cells}  {summary['per_label'][n]:>6}")
    if "lesion_slices" in summary:
        where = summary.get("lesion_slice_index")
        at = f" (index {_ranges(where)})" if where is not None else ""
        lines.append(
            f"lesion       {summary['lesion_slices']} slices{at}, healthy {summary['healthy_slices']}"
        )
    if summary.get("masks"):
        mk = summary["masks"]
        lines.append(
            f"masks        every slice has one: {mk['with_lesion']} with lesion pixels, "
            f"{mk['n_slices'] - mk['with_lesion']} empty (mean {mk['mean_lesion_px']:.0f} lesion px)"
        )
    if summary.get("n_dropped_empty"):
        lines.append(f"dropped      {summary['n_dropped_empty']} empty slices (below the body threshold)")
    raw = summary.get("raw_intensity_range")
    if raw:
        lines.append(f"raw range    [{raw[0]:g}, {raw[1]:g}]")
    mode = summary["intensity_mode"]
    lines.append(f"intensity    {mode if isinstance(mode, str) else ', '.join(mode)} -> [-1, 1]")
    lo, hi = summary["intensity_range"] or (0, 0)
    lines.append(f"slice range  [{lo:.3f}, {hi:.3f}]")
    lines += _duplicate_lines(summary.get("near_duplicates"))
    if summary.get("cross_split_duplicates"):
        lines.append(
            f"warning      {summary['cross_split_duplicates']} identical image(s) appear in more than one "
            "official split"
        )
    lines.extend(f"warning      {w}" for w in summary.get("warnings", []))
    return "\n".join(lines)


def _ranges(idx: list[int]) -> str:
    if not idx:
        return "-"
    parts, start, prev = [], idx[0], idx[0]
    for i in [*idx[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(f"{start}-{prev}" if prev != start else f"{start}")
        if i is not None:
            start = prev = i
    return ", ".join(parts)
