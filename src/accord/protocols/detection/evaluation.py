"""The detection evaluation behind `accord eval detection`.

From a folder of natural photos, every other photo (sorted by name, after a seeded shuffle) is
banked; every photo is then transformed by every edit in `transforms.TRANSFORMS` and queried.
For each matching configuration (plain PDQ, each measure of `variants` alone, all of them), each
transform and each threshold 0..64 it reports:

- recall: the share of banked photos whose transformed copy matches its own bank entry;
- false matches: the share of queries from photos that are *not* banked (the other half, and
  an optional extra folder of unrelated photos) that match any bank entry;
- misattributions: banked photos whose copy matches a different bank entry.

Hashes below PDQ_MIN_QUALITY are dropped on both sides, as in real matching.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from accord.errors import InvalidInput
from accord.protocols.detection.hashers import pdq_dihedral_from_pixels, pdq_from_pixels
from accord.protocols.detection.images import load_image
from accord.protocols.detection.signals import PDQ_MATCH_THRESHOLD_BITS, PDQ_MIN_QUALITY
from accord.protocols.detection.transforms import TRANSFORMS, apply_transform
from accord.protocols.detection.variants import (
    CROP_FRACTIONS,
    MatchMeasures,
    central_crop,
    trim_boxes,
)

THRESHOLDS = tuple(range(65))
NO_MATCH = 257
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}

CONFIGS: dict[str, MatchMeasures] = {
    "plain": MatchMeasures.plain(),
    "dihedral": MatchMeasures(dihedral=True, trim=False, crops=False),
    "trim": MatchMeasures(dihedral=False, trim=True, crops=False),
    "crops": MatchMeasures(dihedral=False, trim=False, crops=True),
    "all": MatchMeasures(),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalConfig:
    images_dir: Path
    fp_dir: Path | None = None
    transforms: tuple[str, ...] | None = None
    fp_transforms: tuple[str, ...] | None = (
        "identity",
        "jpeg-q50",
        "flip-h",
        "border-white",
        "caption-top",
    )
    seed: int = 0
    max_images: int | None = None


U8 = npt.NDArray[np.uint8]


@dataclass(slots=True)
class _QueryHashes:
    """Per transformed image: hashes by kind, each an (k, 32) array (usable quality only)."""

    original: U8  # 1 or 0 rows
    dihedral: U8  # up to 8 rows (original included)
    trim_original: U8
    trim_dihedral: U8

    def select(self, m: MatchMeasures) -> U8:
        parts = [self.dihedral if m.dihedral else self.original]
        if m.trim:
            parts.append(self.trim_dihedral if m.dihedral else self.trim_original)
        return np.concatenate(parts)


def _rows(results: Sequence[Any]) -> U8:
    rows = [
        np.frombuffer(r.hash.value, dtype=np.uint8) for r in results if r.quality >= PDQ_MIN_QUALITY
    ]
    return np.array(rows, dtype=np.uint8).reshape(-1, 32)


def _query_hashes(pixels: U8) -> _QueryHashes:
    dih = pdq_dihedral_from_pixels(pixels)
    t_orig: list[Any] = []
    t_dih: list[Any] = []
    for box in trim_boxes(pixels):
        variants = pdq_dihedral_from_pixels(box.apply(pixels))
        t_orig.append(variants[0])
        t_dih.extend(variants)
    return _QueryHashes(_rows(dih[:1]), _rows(dih), _rows(t_orig), _rows(t_dih))


def _bank_rows(pixels: U8, m: MatchMeasures) -> U8:
    results = [pdq_from_pixels(pixels)]
    if m.trim:
        results.extend(pdq_from_pixels(box.apply(pixels)) for box in trim_boxes(pixels))
    if m.crops:
        results.extend(pdq_from_pixels(central_crop(pixels, f)) for f in CROP_FRACTIONS)
    return _rows(results)


def _min_distances(
    queries: U8, bank: U8, owners: npt.NDArray[np.int64], n_owners: int
) -> npt.NDArray[np.int64]:
    """Minimum distance from any query row to each owner's bank rows (NO_MATCH if none)."""
    out = np.full(n_owners, NO_MATCH, dtype=np.int64)
    if len(queries) == 0 or len(bank) == 0:
        return out
    q = np.unpackbits(queries, axis=1).astype(np.int16)
    b = np.unpackbits(bank, axis=1).astype(np.int16)
    d = q.shape[1] - (q @ b.T + (1 - q) @ (1 - b).T)  # Hamming via matrix products
    per_bank_row = d.min(axis=0)
    np.minimum.at(out, owners, per_bank_row)
    return out


def _pair_statistics(
    originals: list[U8], variants: list[U8], variant_owner: list[int]
) -> dict[str, Any]:
    """Distances between every pair of distinct unrelated photos (plain, and with all query
    variants of one against the plain hash of the other)."""
    if len(originals) < 2:
        return {}
    orig = np.stack(originals)
    bits = np.unpackbits(orig, axis=1).astype(np.int16)
    plain = bits.shape[1] - (bits @ bits.T + (1 - bits) @ (1 - bits).T)
    iu = np.triu_indices(len(orig), k=1)
    plain_pairs = plain[iu]
    var_bits = np.unpackbits(np.concatenate(variants), axis=1).astype(np.int16)
    d = var_bits.shape[1] - (var_bits @ bits.T + (1 - var_bits) @ (1 - bits).T)
    owner = np.array(variant_owner)
    d[np.arange(len(owner)), owner] = NO_MATCH  # not against itself
    per_pair = np.full((len(orig), len(orig)), NO_MATCH, dtype=np.int64)
    np.minimum.at(per_pair, owner, d)
    var_pairs = np.minimum(per_pair, per_pair.T)[iu]

    def stats(a: npt.NDArray[np.int64]) -> dict[str, int]:
        return {
            "pairs": int(len(a)),
            "min_distance": int(a.min()),
            "within_31": int((a <= 31).sum()),
            "within_48": int((a <= 48).sum()),
            "within_64": int((a <= 64).sum()),
        }

    return {"plain": stats(plain_pairs.astype(np.int64)), "all": stats(var_pairs)}


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def run_evaluation(
    config: EvalConfig, *, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Run the evaluation; returns the JSON-able report."""
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    paths = list_images(config.images_dir)
    if config.max_images:
        paths = paths[: config.max_images]
    if len(paths) < 4:
        raise InvalidInput("the evaluation needs at least 4 images")
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(len(paths))
    banked_idx = sorted(order[: len(paths) // 2].tolist())
    banked_set = set(banked_idx)
    other_idx = [i for i in range(len(paths)) if i not in banked_set]
    pixels = [load_image(p.read_bytes()).pixels for p in paths]
    transforms = list(config.transforms or TRANSFORMS)
    for t in transforms:
        if t not in TRANSFORMS:
            raise InvalidInput("unknown transform")

    # Bank side, per configuration.
    banks: dict[str, tuple[U8, npt.NDArray[np.int64]]] = {}
    for name, m in CONFIGS.items():
        rows: list[U8] = []
        owners: list[int] = []
        for owner, i in enumerate(banked_idx):
            r = _bank_rows(pixels[i], m)
            rows.append(r)
            owners.extend([owner] * len(r))
        banks[name] = (np.concatenate(rows), np.array(owners, dtype=np.int64))
    n_bank = len(banked_idx)

    # Query side: every photo, every transform.
    dist_true: dict[str, dict[str, list[int]]] = {c: {t: [] for t in transforms} for c in CONFIGS}
    dist_wrong: dict[str, dict[str, list[int]]] = {c: {t: [] for t in transforms} for c in CONFIGS}
    dist_other: dict[str, dict[str, list[int]]] = {c: {t: [] for t in transforms} for c in CONFIGS}
    for k, t in enumerate(transforms):
        say(f"transform {k + 1}/{len(transforms)}: {t}")
        for i in range(len(paths)):
            q = _query_hashes(apply_transform(t, pixels[i]))
            for c, m in CONFIGS.items():
                bank, owner_ids = banks[c]
                d = _min_distances(q.select(m), bank, owner_ids, n_bank)
                if i in banked_set:
                    own = banked_idx.index(i)
                    dist_true[c][t].append(int(d[own]))
                    others = np.delete(d, own)
                    dist_wrong[c][t].append(int(others.min()) if len(others) else NO_MATCH)
                else:
                    dist_other[c][t].append(int(d.min()))

    # Unrelated photos (false matches only).
    fp_paths: list[Path] = []
    dist_fp: dict[str, dict[str, list[int]]] = {}
    fp_originals: list[U8] = []
    fp_variants: list[U8] = []
    fp_variant_owner: list[int] = []
    fp_transforms = list(config.fp_transforms or transforms)
    if config.fp_dir is not None:
        fp_paths = list_images(config.fp_dir)
        dist_fp = {c: {t: [] for t in fp_transforms} for c in CONFIGS}
        for n, p in enumerate(fp_paths):
            if n % 100 == 0:
                say(f"unrelated photos {n}/{len(fp_paths)}")
            try:
                px = load_image(p.read_bytes()).pixels
            except InvalidInput:
                continue
            fp_hashes = _query_hashes(px)
            if len(fp_hashes.original):
                fp_originals.append(fp_hashes.original[0])
                full = fp_hashes.select(CONFIGS["all"])
                fp_variants.append(full)
                fp_variant_owner.extend([len(fp_originals) - 1] * len(full))
            for t in fp_transforms:
                q = fp_hashes if t == "identity" else _query_hashes(apply_transform(t, px))
                for c, m in CONFIGS.items():
                    bank, owner_ids = banks[c]
                    dist_fp[c][t].append(
                        int(_min_distances(q.select(m), bank, owner_ids, n_bank).min())
                    )

    def curve(ds: list[int]) -> list[float]:
        a = np.array(ds, dtype=np.int64)
        if len(a) == 0:
            return [0.0 for _ in THRESHOLDS]
        return [round(float((a <= th).mean()), 5) for th in THRESHOLDS]

    def pooled(groups: dict[str, list[int]]) -> list[int]:
        return [d for ds in groups.values() for d in ds]

    report: dict[str, Any] = {
        "images_dir": config.images_dir.name,
        "fp_dir": config.fp_dir.name if config.fp_dir else None,
        "n_images": len(paths),
        "n_banked": n_bank,
        "n_unbanked": len(other_idx),
        "n_fp_images": len(fp_paths),
        "fp_transforms": fp_transforms if fp_paths else [],
        "transforms": transforms,
        "configs": {c: m.name for c, m in CONFIGS.items()},
        "bank_hashes": {c: int(len(banks[c][0])) for c in CONFIGS},
        "thresholds": list(THRESHOLDS),
        "default_threshold": PDQ_MATCH_THRESHOLD_BITS,
        "recall": {c: {t: curve(dist_true[c][t]) for t in transforms} for c in CONFIGS},
        "misattributed": {c: curve(pooled(dist_wrong[c])) for c in CONFIGS},
        "false_match_unbanked": {
            c: {t: curve(dist_other[c][t]) for t in transforms} for c in CONFIGS
        },
        "false_match_unbanked_all": {c: curve(pooled(dist_other[c])) for c in CONFIGS},
        "false_match_fp_all": {c: curve(pooled(dist_fp[c])) for c in CONFIGS} if dist_fp else {},
        "n_false_match_queries": {
            c: len(pooled(dist_other[c])) + (len(pooled(dist_fp[c])) if dist_fp else 0)
            for c in CONFIGS
        },
        "closest_unrelated_distance": {
            c: min([*pooled(dist_other[c]), *(pooled(dist_fp[c]) if dist_fp else []), NO_MATCH])
            for c in CONFIGS
        },
        "closest_misattributed_distance": {
            c: min([*pooled(dist_wrong[c]), NO_MATCH]) for c in CONFIGS
        },
        "unrelated_pairs": _pair_statistics(fp_originals, fp_variants, fp_variant_owner),
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    first_fp: dict[str, int | None] = {}
    for c in CONFIGS:
        combined = np.maximum(
            np.array(report["false_match_unbanked_all"][c]),
            np.array(report["false_match_fp_all"].get(c, [0.0] * len(THRESHOLDS))),
        )
        combined = np.maximum(combined, np.array(report["misattributed"][c]))
        hits = np.flatnonzero(combined > 0)
        first_fp[c] = int(hits[0]) if len(hits) else None
    report["first_false_match_threshold"] = first_fp
    return report


def render_markdown(report: dict[str, Any]) -> str:
    """Tables: recall per transform at the default threshold; false matches per threshold."""
    th = int(report["default_threshold"])
    configs = list(report["configs"])
    lines = [
        f"Images: {report['n_images']} ({report['n_banked']} banked, {report['n_unbanked']} not)"
        + (
            f"; unrelated photos: {report['n_fp_images']} x {len(report['fp_transforms'])} edits"
            if report["n_fp_images"]
            else ""
        ),
        "",
        f"Recall at threshold {th} (share of banked photos whose edited copy matches its entry):",
        "",
        "| transformation | " + " | ".join(configs) + " |",
        "|---|" + "---:|" * len(configs),
    ]
    for t in report["transforms"]:
        cells = [f"{100 * report['recall'][c][t][th]:.0f}%" for c in configs]
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    means = [np.mean([report["recall"][c][t][th] for t in report["transforms"]]) for c in configs]
    lines.append("| **mean** | " + " | ".join(f"**{100 * m:.1f}%**" for m in means) + " |")
    lines += [
        "",
        "False matches (share of queries from photos not in the bank that match any entry; "
        "misattributed: banked photos matching another entry):",
        "",
        "| measure | queries | "
        + " | ".join(f"t={x}" for x in (16, 24, 31, 40, 48, 56))
        + " | first t with a false match |",
        "|---|---:|" + "---:|" * 7,
    ]
    for c in configs:
        fm = np.maximum(
            np.array(report["false_match_unbanked_all"][c]),
            np.array(report["false_match_fp_all"].get(c, [0.0] * 65)),
        )
        cells = [f"{100 * fm[x]:.2f}%" for x in (16, 24, 31, 40, 48, 56)]
        first = report["first_false_match_threshold"][c]
        lines.append(
            f"| {c} | {report['n_false_match_queries'][c]} | "
            + " | ".join(cells)
            + f" | {first if first is not None else '> 64'} |"
        )
    pairs = report.get("unrelated_pairs") or {}
    if pairs:
        lines += [
            "",
            "Pairs of distinct unrelated photos (each photo's hashes against every other's):",
            "",
            "| queries | pairs | closest | pairs <= 31 | <= 48 | <= 64 |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for c, label in (("plain", "plain PDQ"), ("all", "all query variants")):
            p = pairs[c]
            lines.append(
                f"| {label} | {p['pairs']} | {p['min_distance']} | {p['within_31']} | "
                f"{p['within_48']} | {p['within_64']} |"
            )
    closest = report.get("closest_unrelated_distance", {})
    if closest:
        lines += [
            "",
            "Closest distance between an unrelated query and any bank hash: "
            + ", ".join(f"{c} {closest[c]}" for c in configs)
            + " (misattributed, closest: "
            + ", ".join(f"{c} {report['closest_misattributed_distance'][c]}" for c in configs)
            + ").",
        ]
    lines.append("")
    return "\n".join(lines)


def write_plots(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """PNG plots: recall vs threshold per transform (plain and all), false matches vs threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    th = report["thresholds"]
    paths = []
    fig, axes = plt.subplots(1, 2, figsize=(15, 6.5), sharey=True)
    cmap = plt.get_cmap("tab20")
    for ax, c in zip(axes, ("plain", "all"), strict=True):
        for k, t in enumerate(report["transforms"]):
            ax.plot(
                th,
                report["recall"][c][t],
                label=t,
                color=cmap(k % 20),
                linestyle="-" if k < 20 else "--",
                linewidth=1.2,
            )
        ax.axvline(report["default_threshold"], color="grey", linestyle=":", linewidth=1)
        ax.set_title(f"recall vs threshold: {c}")
        ax.set_xlabel("PDQ distance threshold (bits)")
        ax.set_xlim(0, 64)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("recall (banked photos matched)")
    axes[1].legend(fontsize=7, loc="lower right", ncol=2)
    fig.tight_layout()
    p = out_dir / "detection-recall.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)

    fig, ax = plt.subplots(figsize=(8, 5))
    for c in report["configs"]:
        fm = np.maximum(
            np.array(report["false_match_unbanked_all"][c]),
            np.array(report["false_match_fp_all"].get(c, [0.0] * 65)),
        )
        ax.plot(th, fm, label=c)
    ax.axvline(report["default_threshold"], color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("PDQ distance threshold (bits)")
    ax.set_ylabel("false-match rate (unrelated queries matching)")
    ax.set_title("false matches vs threshold")
    ax.set_xlim(0, 64)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    p = out_dir / "detection-false-matches.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)
    return paths
