"""Every number the paper reports in Tables 1-7, as data, under the harness's own metric names.

"Restructuring Vector Quantization with the Rotation Trick" (Fifty et al., ICLR 2025). The values are
restated from the paper's Tables 1-7 and appendix A.7-A.9; nothing here is computed. The report
(harness/report/) prints them beside our numbers, marked "(paper)", and derives from them the claims it
checks ours against (harness/report/verdicts.py). What each metric measures, its header and its better
direction are in the report's metrics registry (harness/report/metrics.py).

Layout:
- `TABLES[table_id]`: title, family, the columns (harness metric names) in the paper's order, the settings
  (blocks of the table) in the paper's order, the rows (one per setting × approach; approach = the harness
  estimator name), the approach the paper proposes, the table's baseline and the paper's own claim in words.
- `SECTIONS[section_id]`: appendix analyses without a table (A.7, A.8, A.9.2): the paper's statement and,
  where it gives one, a ratio.

A value of None is the paper's "—" (not reported). Usage values are fractions (0.97 for the paper's 97%).
"""
from __future__ import annotations

_T1 = ["train_usage_batch", "train_rec_loss", "train_quant_error", "val_rec_loss", "r_fid", "r_is"]
_T2 = ["train_usage_batch", "train_quant_error", "val_loss", "r_fid", "r_is"]
_T4 = ["train_usage_batch", "train_rec_loss", "train_quant_error", "val_loss", "r_fid", "r_is"]
_T5 = ["train_usage_batch", "train_rec_loss", "train_quant_error", "val_loss", "r_fvd"]


def _row(setting: str, approach: str, columns: list[str], values: tuple, kind: str = "run", note: str = "") -> dict:
    if len(values) != len(columns):
        raise ValueError(f"{setting}/{approach}: {len(values)} values for {len(columns)} columns")
    return {"setting": setting, "approach": approach, "kind": kind, "note": note,
            "values": dict(zip(columns, values))}


TABLES: dict[str, dict] = {
    "table1": {
        "title": "Table 1: VQ-VAE on ImageNet (taming CNN, EMA codebook)",
        "family": "vqvae",
        "columns": _T1,
        "proposed": "rotation",
        "baseline": "ste",
        "settings": {
            "euclidean_1024x32": {"label": "Euclidean lookup, latent 16×16×32 (table header: 32×32×32), K = 1024",
                                  "match": {"model.preset": "paper_euclidean_1024x32"}},
            "cosine_1024x32": {"label": "Cosine lookup, latent 16×16×32 (table header: 32×32×32), K = 1024",
                               "match": {"model.preset": "paper_cosine_1024x32"}},
            "euclidean_8192x3": {"label": "Euclidean lookup, latent 64×64×3, K = 8192",
                                 "match": {"model.preset": "paper_euclidean_8192x3"}},
            "cosine_8192x3": {"label": "Cosine lookup, latent 64×64×3, K = 8192",
                              "match": {"model.preset": "paper_cosine_8192x3"}},
        },
        "rows": [
            _row("euclidean_1024x32", "ste", _T1, (1.00, 0.107, 5.9e-3, 0.115, 106.1, 11.7)),
            _row("euclidean_1024x32", "rotation", _T1, (0.97, 0.116, 5.1e-4, 0.122, 85.7, 17.0)),
            _row("cosine_1024x32", "ste", _T1, (0.75, 0.107, 2.9e-3, 0.114, 84.3, 17.7)),
            _row("cosine_1024x32", "rotation", _T1, (0.91, 0.105, 2.7e-3, 0.111, 82.9, 18.1)),
            _row("euclidean_8192x3", "ste", _T1, (1.00, 0.028, 1.0e-3, 0.030, 19.0, 97.3)),
            _row("euclidean_8192x3", "gumbel", _T1, (0.39, 0.054, None, 0.058, 28.6, 74.9)),
            _row("euclidean_8192x3", "hessian", _T1, (0.39, 0.082, 6.9e-5, 0.112, 35.6, 65.1)),
            _row("euclidean_8192x3", "exact", _T1, (0.84, 0.050, 2.0e-3, 0.053, 25.4, 80.4)),
            _row("euclidean_8192x3", "rotation", _T1, (0.99, 0.028, 1.4e-4, 0.030, 16.5, 106.3)),
            _row("cosine_8192x3", "ste", _T1, (0.31, 0.034, 1.2e-4, 0.038, 26.0, 77.8)),
            _row("cosine_8192x3", "hessian", _T1, (0.37, 0.035, 3.8e-5, 0.037, 29.0, 71.5)),
            _row("cosine_8192x3", "exact", _T1, (0.38, 0.035, 3.6e-5, 0.037, 28.2, 75.0)),
            _row("cosine_8192x3", "rotation", _T1, (0.38, 0.033, 9.6e-5, 0.035, 24.2, 83.9)),
        ],
        "claim": ("The rotation trick reduces the quantization error (sometimes by an order of magnitude), "
                  "improves low codebook usage, and substantially improves r-FID and r-IS; the Hessian "
                  "approximation and exact gradients reconstruct poorly (§5.1)."),
    },
    "table2": {
        "title": "Table 2: VQGAN for autoregressive generation (taming-transformers, 16×16×256, K = 1024)",
        "family": "vqgan",
        "columns": _T2,
        "proposed": "rotation",
        "baseline": "ste",
        "settings": {
            "imagenet": {"label": "ImageNet",
                         "match": {"model.preset": "paper_taming", "data.root": "/path/to/imagenet"}},
            "ffhq_celebahq": {"label": "FFHQ & CelebA-HQ",
                              "match": {"model.preset": "paper_taming", "data.root": "/path/to/ffhq_celebahq"}},
        },
        "rows": [
            _row("imagenet", "ste", _T2, (None, None, None, 7.9, 114.4), kind="reported",
                 note="VQGAN as reported by Esser et al. (2021)"),
            _row("imagenet", "ste", _T2, (0.95, 0.134, 0.594, 7.3, 118.2), note="the authors' run"),
            _row("imagenet", "rotation", _T2, (0.98, 0.002, 0.422, 4.6, 146.5)),
            _row("ffhq_celebahq", "ste", _T2, (0.27, 0.233, 0.565, 4.7, 5.0)),
            _row("ffhq_celebahq", "rotation", _T2, (0.99, 0.002, 0.313, 3.7, 5.2)),
        ],
        "claim": ("With the rotation trick the VQGAN's quantization error drops substantially, codebook usage "
                  "rises, and validation loss, r-FID and r-IS improve (§5.2)."),
    },
    "table3": {
        "title": "Table 3: VQGAN for latent diffusion (latent-diffusion, ImageNet)",
        "family": "vqgan",
        "columns": _T2,
        "proposed": "rotation",
        "baseline": "ste",
        "settings": {
            "ldm_f4": {"label": "latent 64×64×3, K = 8192", "match": {"model.preset": "paper_ldm_f4"}},
            "ldm_f8": {"label": "latent 32×32×4, K = 16384", "match": {"model.preset": "paper_ldm_f8"}},
        },
        "rows": [
            _row("ldm_f4", "ste", _T2, (0.15, 2.5e-3, 0.183, 0.53, 220.6)),
            _row("ldm_f4", "gumbel", _T2, (0.04, None, 0.197, 0.60, 219.7)),
            _row("ldm_f4", "rotation", _T2, (0.86, 1.7e-4, 0.142, 0.27, 228.0)),
            _row("ldm_f8", "ste", _T2, (0.02, 1.2e-2, 0.385, 5.0, 141.5)),
            _row("ldm_f8", "gumbel", _T2, (0.12, None, 0.3031, 1.7, 189.5)),
            _row("ldm_f8", "rotation", _T2, (0.27, 2.4e-4, 0.269, 1.1, 200.2)),
        ],
        "claim": ("Rotation trick: lower quantization error, higher codebook usage, and better validation loss, "
                  "r-FID and r-IS in both latent-diffusion settings (§5.2; r-FID 5.0 → 1.1 and usage 13.5× in "
                  "the 32×32×4 setting, §7)."),
    },
    "table4": {
        "title": "Table 4: ViT-VQGAN on ImageNet (8192 codes, 32-d factorised cosine codes)",
        "family": "vit_vqgan",
        "columns": _T4,
        "proposed": "rotation",
        "baseline": "ste",
        "settings": {
            "imagenet": {"label": "ImageNet, K = 8192", "match": {"model.preset": "paper"}},
        },
        "rows": [
            _row("imagenet", "ste", _T4, (None, None, None, None, 22.8, 72.9), kind="reported",
                 note="ViT-VQGAN as reported by Yu et al. (2021)"),
            _row("imagenet", "ste", _T4, (0.003, 0.124, 6.7e-3, 0.127, 29.2, 43.0), note="the authors' run"),
            _row("imagenet", "rotation", _T4, (0.022, 0.113, 8.3e-3, 0.113, 11.2, 93.1)),
        ],
        "claim": ("Codebook utilisation and reconstruction metrics improve significantly with the rotation "
                  "trick; the quantization error is roughly the same (§5.3)."),
    },
    "table5": {
        "title": "Table 5: TimeSformer-VQGAN on video (BAIR, UCF-101)",
        "family": "timesformer_vqgan",
        "columns": _T5,
        "proposed": "rotation",
        "baseline": "ste",
        "settings": {
            "bair": {"label": "BAIR 16×64×64×3, K = 1024", "match": {"model.preset": "paper_bair"}},
            "ucf101": {"label": "UCF-101 16×128×128×3, K = 2048 (Table 5 says 1024)",
                       "match": {"model.preset": "paper_ucf101"}},
        },
        "rows": [
            _row("bair", "ste", _T5, (0.004, 0.221, 0.03, 0.28, 1661.1),
                 note="codebook collapse; diverges"),
            _row("bair", "rotation", _T5, (0.43, 0.074, 3.0e-3, 0.074, 21.4)),
            _row("ucf101", "ste", _T5, (0.001, 0.190, 0.006, 0.169, 2878.1),
                 note="codebook collapse; diverges"),
            _row("ucf101", "rotation", _T5, (0.30, 0.111, 0.020, 0.109, 229.1)),
        ],
        "claim": ("With the STE the TimeSformer-VQGAN's codebook collapses (usage → ~0% within the first "
                  "epochs); with the rotation trick training is stable and r-FVD is far lower (A.1)."),
    },
    "table6": {
        "title": "Table 6 (A.9): norm scaling on the VQ-VAE, Euclidean lookup, latent 64×64×3, K = 8192",
        "family": "vqvae",
        "columns": _T1,
        "proposed": "rotation",
        "baseline": "rotation_unscaled",
        "settings": {
            "euclidean_8192x3": {"label": "Euclidean lookup, latent 64×64×3, K = 8192",
                                 "match": {"model.preset": "paper_euclidean_8192x3"}},
        },
        "rows": [
            _row("euclidean_8192x3", "rotation", _T1, (0.99, 0.028, 1.4e-4, 0.030, 16.5, 106.3), note="λRe"),
            _row("euclidean_8192x3", "rotation_unscaled", _T1, (1.00, 0.028, 4.0e-4, 0.030, 16.5, 106.1),
                 note="Re + sg(q − Re)"),
        ],
        "claim": ("For the VQ-VAE, scaling by λ = ‖q‖/‖e‖ makes little difference: the two variants tie on "
                  "reconstruction and r-FID; λRe has the lower quantization error (A.9)."),
    },
    "table7": {
        "title": "Table 7 (A.9): norm scaling on the latent-diffusion VQGAN (stopped early)",
        "family": "vqgan",
        "columns": _T2,
        "proposed": "rotation",
        "baseline": "rotation_unscaled",
        "settings": {
            "ldm_f4": {"label": "latent 64×64×3, K = 8192", "match": {"model.preset": "paper_ldm_f4"}},
            "ldm_f8": {"label": "latent 32×32×4, K = 16384", "match": {"model.preset": "paper_ldm_f8"}},
        },
        "rows": [
            _row("ldm_f4", "rotation", _T2, (0.45, 4.0e-4, 0.161, 0.46, 225.0), note="λRe"),
            _row("ldm_f4", "rotation_unscaled", _T2, (0.28, 1.5e-3, 0.183, 0.6, 220.0), note="Re + sg(q − Re)"),
            _row("ldm_f8", "rotation", _T2, (0.18, 3.3e-4, 0.292, 1.5, 196.1), note="λRe"),
            _row("ldm_f8", "rotation_unscaled", _T2, (0.13, 9.4e-4, 0.292, 1.5, 191.5), note="Re + sg(q − Re)"),
        ],
        "claim": ("For the VQGAN, norm scaling helps: λRe has higher usage, lower quantization error and "
                  "equal or better validation loss, r-FID and r-IS than Re + sg(q − Re) (A.9)."),
    },
}

#: Appendix analyses without a table of numbers.
SECTIONS: dict[str, dict] = {
    "A.7": {
        "title": "A.7: R and λ treated as constants",
        "statement": (
            "The paper treats R and λ as constants (detached): differentiating through them would require "
            "differentiating the lookup Q(e), whose derivative is zero inside a Voronoi cell. The paper runs no "
            "experiment with R kept in the graph. The variants `rotation_through_r` (R and λ in the graph) and "
            "`rotation_radial_removed` (the authors' VQGAN/ViT-VQGAN scripts: detached R applied to the "
            "non-detached ê, scaled by ‖q‖) are this harness's ablations, not the paper's."),
        "proposed": "rotation",
        "baseline": "rotation",
        "settings": {},
        "ratios": [],
    },
    "A.8": {
        "title": "A.8: a reflection instead of a rotation",
        "statement": (
            "Using a reflection H = I − 2wwᵀ (w ∝ ê − q̂) instead of the rotation trains worse: the VQGAN's "
            "validation loss is about 3× the rotation trick's after 1 epoch, and the VQ-VAE's (Euclidean, "
            "64×64×3) about 2× after 15 epochs. The paper shows validation-loss curves, no table."),
        "proposed": "rotation",
        "baseline": "reflection",
        "settings": {
            "vqgan": {"label": "VQGAN (which one is not stated; appendix_a8 uses latent diffusion 64×64×3, K = 8192)",
                      "match": {"model.family": "vqgan"}},
            "vqvae_euclidean_8192x3": {"label": "VQ-VAE, Euclidean lookup, latent 64×64×3, K = 8192",
                                       "match": {"model.family": "vqvae"}},
        },
        # reflection's validation loss ≈ ratio × the rotation trick's (paper's reading of its curves)
        "ratios": [
            {"setting": "vqgan", "metric": "val_loss", "approach": "reflection", "reference": "rotation",
             "ratio": 3.0, "when": "after 1 epoch"},
            {"setting": "vqvae_euclidean_8192x3", "metric": "val_rec_loss", "approach": "reflection",
             "reference": "rotation", "ratio": 2.0, "when": "after 15 epochs"},
        ],
    },
    "A.9.2": {
        "title": "A.9.2: general norm scaling γ(e)",
        "statement": (
            "q̃ = γ(e) R e + sg(q − γ(e) R e) with γ detached; γ = λ and γ = 1 are Tables 6-7; "
            "γ = 1/(8‖q − e‖²) is shown only as a plot (no numbers)."),
        "proposed": "rotation",
        "baseline": "rotation_unscaled",
        "settings": {},
        "ratios": [],
    },
}


def reference(ref_id: str) -> dict:
    """A table or section by id (e.g. 'table1', 'A.8'); KeyError naming the valid ids otherwise."""
    if ref_id in TABLES:
        return TABLES[ref_id]
    if ref_id in SECTIONS:
        return SECTIONS[ref_id]
    raise KeyError(f"no paper table or section {ref_id!r}; valid: {', '.join(list(TABLES) + list(SECTIONS))}")


def rows(table_id: str, setting: str | None = None, approach: str | None = None) -> list[dict]:
    """The paper's rows of a table, optionally of one setting and/or approach, in the paper's order."""
    return [row for row in TABLES[table_id]["rows"]
            if (setting is None or row["setting"] == setting) and (approach is None or row["approach"] == approach)]


def value(table_id: str, setting: str, approach: str, metric: str, kind: str = "run"):
    """One number of the paper (None where the paper prints '—' or has no such row)."""
    for row in rows(table_id, setting, approach):
        if row["kind"] == kind:
            return row["values"].get(metric)
    return None
