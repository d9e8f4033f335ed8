"""Reproduce the lecture: every experiment of sections 1-10 in order, then one report.

    aejax reproduce --quick          # minutes on a laptop CPU: data subsets, 1 epoch
    aejax reproduce                  # the lecture's epochs
    aejax reproduce --only s8_aae_uniform,s8_aae_uniform_corrected
    aejax reproduce --report-only --no-html --out docs/results   # the committed report

Each experiment writes its figures and metrics.json into ``<out>/<name>`` (staged: a
failed run keeps the previous result; an interrupted one resumes with the same
command). Experiments already completed with the same flags are skipped unless
``--force``. ``--jobs N`` runs N at once, each in a process of its own (its output in
``<out>/logs``). ``<out>/REPORT.md`` and ``<out>/REPORT.html`` (figures inlined) put, for
each section, the lecture's claim next to aejax's figures and measured numbers.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import datetime
import html
import importlib
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time
import traceback
from typing import Any

import jax

from aejax import flags, runs


DEFAULT_SEED = 42
SEEDS = (42, 43, 44)  # headline claims: mean +- sd over these


@dataclasses.dataclass(frozen=True)
class Experiment:
    """One entry of the report: an experiment's command, the claim it checks and what to show.

    ``seeds``: one run per seed (folders ``<name>/seed<k>`` when more than one), reported as
    mean +- sd; ``label_seeds``: each seed also draws its own labelled subset. ``note``: how
    the protocol differs from the paper's, printed beside the numbers.
    """

    name: str  # folder under --out
    module: str  # the experiment, run as ``aejax.experiments.<module>.main(flags)``
    flags: tuple[str, ...]  # its preset and any further flags
    section: str
    claim: str  # what the lecture or paper shows, in a sentence
    headline: tuple[tuple[str, str, str], ...]  # (label, metrics.json key path "a.b", format spec)
    figures: tuple[str, ...]
    uses_classifier: bool = False
    seeds: tuple[int, ...] = (DEFAULT_SEED,)
    label_seeds: bool = False
    note: str = ""
    chooses: str = ""  # what this entry's validation numbers choose (entries run under --validation)


@dataclasses.dataclass(frozen=True)
class Unit:
    """One run of an entry: its seed, folder (relative to --out) and command line."""

    experiment: Experiment
    seed: int
    folder: str
    argv: tuple[str, ...]


def _exp(name, module, flags, section, claim, headline, figures, uses_classifier=False, seeds=(DEFAULT_SEED,),
         label_seeds=False, note="", chooses="") -> Experiment:
    return Experiment(name, module, tuple(flags), section, claim, tuple(headline), tuple(figures), uses_classifier,
                      tuple(seeds), label_seeds, note, chooses)


RECON = (("test BCE", "test_bce", ".4f"), ("test MSE", "test_mse", ".4f"))
ELBO = (("test negative ELBO, grey-level BCE (nats)", "test_negative_elbo_nats", ".1f"),
        ("IWAE NLL, grey-level BCE (nats)", "iwae_nll_nats", ".1f"))
PRIOR_MATCH = (("test codes inside the prior's support", "prior_match.inside_support", ".1%"),
               ("MMD^2 of test codes against prior samples", "prior_match.distribution.mmd2", ".2e"),
               ("MMD^2 of two prior samples (noise level)", "prior_match.distribution.mmd2_noise", ".2e"),
               ("discriminator balanced accuracy (0.5 = chance)", "prior_match.discriminator_accuracy", ".3f"),
               ("test codes inside, encoder statistics recomputed", "prior_match_recomputed_bn.inside_support", ".1%"))
ELBO_SAME_IMAGES = (*ELBO, ("negative ELBO on the IWAE's images, grey-level (nats)", "iwae_negative_elbo_same_images_nats", ".1f"),
                    ("IWAE importance samples k", "iwae_samples", "d"), ("IWAE test images", "iwae_images", "d"))
BOX_SHARES = (("smallest box's share of the test codes (ideal 10%)", "prior_match.box_share_min", ".1%"),
              ("largest box's share of the test codes (ideal 10%)", "prior_match.box_share_max", ".1%"))
UNIFORMITY = (("uniformity of the codes inside the box: chi-square p-value over a 10x10 grid",
               "prior_match.distribution.uniformity.p_value", ".2g"),)
VALIDATION_PRIOR_MATCH = (
    ("validation codes inside the prior's support", "validation_prior_match.inside_support", ".1%"),
    ("MMD^2 of validation codes against prior samples", "validation_prior_match.distribution.mmd2", ".2e"),
    ("MMD^2 of two prior samples (noise level)", "validation_prior_match.distribution.mmd2_noise", ".2e"),
    ("uniformity of the validation codes inside the box: chi-square p-value",
     "validation_prior_match.distribution.uniformity.p_value", ".2g"))
VALIDATION_BOX_SHARES = (
    ("validation: smallest box's share (ideal 10%)", "validation_prior_match.box_share_min", ".1%"),
    ("validation: largest box's share (ideal 10%)", "validation_prior_match.box_share_max", ".1%"))
S9_VALIDATION = (("validation: label head accuracy", "validation.label_head_accuracy", ".2%"),
                 ("validation: logistic probe leak", "validation.label_leak.logistic.accuracy", ".1%"),
                 ("validation: 10-NN probe leak", "validation.label_leak.knn.accuracy", ".1%"))
S10_FIGURES = ("error_by_epoch.png", "style_transfer.png")
# style from label, as section 9 measures it: the targets of the disentangled style
S10_STYLE = (("style transfer classified as the class asked for", "style_transfer_accuracy.overall", ".1%"),
             ("label leak: logistic probe on the style", "label_leak.logistic.accuracy", ".1%"),
             ("label leak: 10-NN probe on the style", "label_leak.knn.accuracy", ".1%"))
# No epoch count in the lecture: chosen on validation (s10_choice_epochs) within the CPU budget
# of the report, which holds 15 seeded section-10 runs
S10_EPOCHS = 5
S10_CHOICE_EPOCHS = 10  # the validation curve that chooses it
def _s10_protocol(epochs: int) -> tuple[str, ...]:
    return ("--validation", "--epochs", str(epochs))


def _s10_note(epochs: int) -> str:
    return (f"Validation protocol: trained on 50,000 images for {epochs} epochs, followed on the 10,000 held "
            "out, the test set read once. The paper trains far longer (thousands of epochs).")


S10_PROTOCOL, S10_NOTE = _s10_protocol(S10_EPOCHS), _s10_note(S10_EPOCHS)

CLUSTERING = (("clustering error, clusters labelled by their most confident training image (the paper's)",
               "clustering.most_confident.error", ".2%"),
              ("clustering error, clusters labelled by their training majority", "clustering.train_majority.error", ".2%"),
              ("clustering error, clusters labelled by the test set itself (optimistic)",
               "clustering.test_majority.error", ".2%"),
              ("clusters holding test images", "clustering.clusters_used", "d"),
              ("digits without a cluster", "clustering.classes_without_cluster", ""))
CLUSTERING_VALIDATION = (("validation clustering error after the last epoch (the paper's labelling)",
                          "validation_final_error", ".2%"),)

EXPERIMENTS: tuple[Experiment, ...] = (
    _exp("s1_pca", "s1_pca", [], "1. PCA as the simplest autoencoder",
         "PCA(0.90) keeps 87 components (about 9x compression); it reconstructs and mildly denoises; "
         "only the 1s separate in the first two coordinates.",
         [("components kept", "pca_components", "d"), ("test MSE", "test_mse", ".4f"),
          ("PSNR noisy (dB)", "psnr_noisy_db", ".2f"), ("PSNR PCA-filtered (dB)", "psnr_filtered_db", ".2f")],
         ["reconstructions.png", "denoising.png", "latent_scatter.png"]),
    _exp("s2_latent2", "s2_conv_ae", ["--preset", "lecture_latent2"], "2. Convolutional autoencoder",
         "Latent 2: recognisable but blurry reconstructions; the 2-D codes cluster by digit.",
         [*RECON, ("PCA(2) test MSE", "pca2_test_mse", ".4f")],
         ["reconstructions.png", "latent_scatter.png"]),
    _exp("s2_latent24", "s2_conv_ae", ["--preset", "lecture"], "2. Convolutional autoencoder",
         "Latent 24: sharp reconstructions; it denoises the first 64 test digits (noise std 0.3).",
         [*RECON, ("PCA(24) test MSE", "pca24_test_mse", ".4f"), ("PSNR noisy (dB)", "psnr_noisy_db", ".2f"),
          ("PSNR AE (dB)", "psnr_ae_eval_db", ".2f"), ("PSNR PCA(0.90) (dB)", "psnr_pca90_db", ".2f")],
         ["reconstructions.png", "denoising.png"]),
    _exp("s2_denoising", "s2_conv_ae", ["--preset", "lecture_denoising"],
         "2. Convolutional autoencoder",
         "A denoising AE (noisy inputs, clean targets) removes the noise better than the plain one.",
         [*RECON, ("PSNR noisy (dB)", "psnr_noisy_db", ".2f"), ("PSNR AE (dB)", "psnr_ae_eval_db", ".2f")],
         ["denoising.png"]),
    _exp("s3_sparse_l1", "s3_sparse_ae", ["--preset", "lecture"], "3. Sparse autoencoder",
         "Latent 900 with an L1 penalty on activations (beta 0.01): mean activation about 0.10, "
         "class-specific activation maps.",
         [*RECON, ("mean activation", "mean_activation", ".3f"), ("PSNR denoised (dB)", "psnr_denoised_db", ".2f")],
         ["class_activation_maps.png", "activation_histograms.png", "denoising.png"]),
    _exp("s3_sparse_kl", "s3_sparse_ae", ["--preset", "lecture_kl"], "3. Sparse autoencoder",
         "KL sparsity towards a target rate 0.1 (per unit, over the batch).",
         [*RECON, ("mean activation", "mean_activation", ".3f")],
         ["class_activation_maps.png", "activation_histograms.png", "sparsity_costs.png"]),
    _exp("s4_interpolation", "s4_interpolation", [], "4. Interpolation with a plain autoencoder",
         "Decoding the straight line from a 7 to a 6 fades one digit into the other (not a smooth morph).",
         [*RECON, ("largest distance of a frame from both ends", "interpolation_max_distance_from_ends", ".3f")],
         ["interpolation.png", "interpolation.gif"]),
    _exp("s5_vae_kl_only", "s5_vae_kl_only", [], "5. Variational autoencoder",
         "KL alone: mu near 0, variances near 1, classes inseparable; the decoder learns nothing.",
         [("mean |mu|", "mu_mean_abs", ".3f"), ("mean variance", "variance_mean", ".3f"),
          ("logistic probe on mu (fitted on training mu, all test mu)", "probe_from_mu.logistic.accuracy", ".1%"),
          ("the same probe, training labels permuted (chance)", "probe_from_mu.logistic.permuted_accuracy", ".1%"),
          ("majority share of the test labels", "probe_from_mu.logistic.majority_share", ".1%")],
         ["histograms.png", "latent_scatter.png"]),
    _exp("s5_vae_latent2", "s5_vae", ["--preset", "lecture_latent2"], "5. Variational autoencoder",
         "BCE + 0.005 KL, latent 2: mu clusters by digit (4 and 9 overlap); a grid decodes to the digit map.",
         [*RECON, *ELBO_SAME_IMAGES], ["latent_scatter.png", "latent_grid.png", "reconstructions.png"]),
    _exp("s5_vae_latent24", "s5_vae", ["--preset", "lecture"], "5. Variational autoencoder",
         "Latent 24: smooth 7 -> 6 interpolation, denoising, blurrier reconstructions than the AE; "
         "vector arithmetic only partly transfers style.",
         [*RECON, *ELBO_SAME_IMAGES, ("active latent dimensions", "active_dims", "d")],
         ["interpolation.png", "interpolation.gif", "reconstructions.png", "denoising.png", "vector_arithmetic.png"]),
    _exp("s5_choice_lecture", "s5_vae", ["--preset", "lecture", "--validation"], "5. Variational autoencoder",
         "Choosing the VAE's recipe on validation images: the lecture's (BCE + 0.005 KL, no warm-up).",
         [("validation negative ELBO, grey-level BCE (nats)", "validation_negative_elbo_nats", ".2f")], [],
         chooses="the recipe of the `recommended` preset: of this entry and s5_vae_recommended, the lower "
                 "validation negative ELBO"),
    _exp("s5_vae_recommended", "s5_vae", ["--preset", "recommended"], "5. Variational autoencoder",
         "(Beyond the lecture.) beta = 1, the plain ELBO, with the KL weight warmed up over the first epoch.",
         [("validation negative ELBO, grey-level BCE (nats)", "validation_negative_elbo_nats", ".2f"), *RECON,
          *ELBO_SAME_IMAGES, ("active latent dimensions", "active_dims", "d")],
         ["reconstructions.png", "interpolation.png"]),
    _exp("s5_vae_binarized", "s5_vae", ["--preset", "binarized"], "5. Variational autoencoder",
         "(Not in the lecture.) The latent-24 VAE at beta = 1 on binarized MNIST, the literature's benchmark: "
         "the IWAE paper (Burda et al. 2016) about 85-87 nats, pythae's VAE 89.8 nats.",
         [("IWAE NLL, binarized MNIST (nats)", "iwae_nll_nats", ".2f"),
          ("negative ELBO on the same images (nats)", "iwae_negative_elbo_same_images_nats", ".2f"),
          ("importance samples k", "iwae_samples", "d"), ("test images", "iwae_images", "d")],
         ["reconstructions.png"],
         note="Dynamic binarization of the training images, one fixed seeded binarization of the test set; "
              "the literature trains for hundreds to thousands of epochs, this run for the preset's."),
    _exp("s6_toy_conditional", "s6_toy_conditional", [], "6. Conditional autoencoder on toy 2-D data",
         "The plain AE maps points where there is nothing; conditioned on the label it follows both shapes.",
         [("plain AE test MSE", "plain_test_mse", ".4f"), ("conditional AE test MSE", "conditional_test_mse", ".4f"),
          ("plain / conditional", "mse_ratio_plain_over_conditional", ".2f")],
         ["toy_reconstructions.png"],
         note="Faithful to the lecture: its plateau schedule and stop rule watch the test MSE."),
    _exp("s6_toy_conditional_validation", "s6_toy_conditional", ["--preset", "recommended"],
         "6. Conditional autoencoder on toy 2-D data",
         "The same under the validation protocol: the plateau schedule and stop rule watch a validation split "
         "held out of the training points; the test points are scored once.",
         [("plain AE test MSE", "plain_test_mse", ".4f"), ("conditional AE test MSE", "conditional_test_mse", ".4f"),
          ("plain / conditional", "mse_ratio_plain_over_conditional", ".2f")],
         ["toy_reconstructions.png"]),
    _exp("classifier", "classifier", [], "7. Conditional VAE (CVAE)",
         "(aejax's evaluation CNN, not in the lecture: it scores generated digits in sections 7 and 9.)",
         [("test accuracy", "test_accuracy", ".2%")], []),
    _exp("s7_cvae", "s7_cvae", [], "7. Conditional VAE (CVAE)",
         "Codes of all digits form one blob; a grid decoded with label 4 (or 9) draws only 4s (9s); "
         "a 2's posterior samples decoded with label 5 are 5s in the 2's style.",
         [("generated digits classified as their label", "generation_accuracy.overall", ".2%"),
          ("style transfer classified as the target label", "style_transfer_accuracy.overall", ".2%"), *ELBO],
         ["latent_all.png", "grid_label4.png", "grid_label9.png", "style_transfer.png"], uses_classifier=True,
         seeds=SEEDS),
    _exp("s8_choice_lecture", "s8_aae", ["--preset", "lecture", "--validation"], "8. Adversarial autoencoder",
         "Choosing the uniform prior's recipe on validation codes: the lecture's discriminator.",
         VALIDATION_PRIOR_MATCH, ["latent_final.png"],
         chooses="the recipe of the `recommended` preset: of this entry and s8_aae_uniform_corrected (which "
                  "reports the same validation numbers), the one whose validation codes are closer to the prior "
                  "(lower MMD^2)"),
    _exp("s8_aae_uniform", "s8_aae", ["--preset", "lecture"], "8. Adversarial autoencoder",
         "Uniform prior on [-2.5, 2.5]^2, the lecture's discriminator (BatchNorm): the codes should fill the box.",
         [*PRIOR_MATCH, *RECON], ["latent_final.png", "latent_epochs.gif", "grid.png"]),
    _exp("s8_aae_uniform_corrected", "s8_aae", ["--preset", "recommended"], "8. Adversarial autoencoder",
         "The same with aejax's corrected discriminator (no BatchNorm, balanced loss, the generator term in the "
         "autoencoder's Adam): the codes' scale is matched too.",
         [*PRIOR_MATCH, *UNIFORMITY, *RECON, *VALIDATION_PRIOR_MATCH],
         ["latent_final.png", "latent_epochs.gif", "grid.png"], seeds=SEEDS),
    _exp("s8_aae_boxes", "s8_aae", ["--preset", "lecture_boxes"],
         "8. Adversarial autoencoder", "Ten uniform boxes as the prior: the codes gather in the boxes.",
         [*PRIOR_MATCH, *BOX_SHARES, *RECON], ["prior_samples.png", "latent_final.png"]),
    _exp("s8_aae_boxes_corrected", "s8_aae", ["--preset", "recommended_boxes"],
         "8. Adversarial autoencoder", "Ten boxes with the corrected discriminator, label-conditioned: digit k in box k "
         "(rates cosine-decayed over the run).",
         [*PRIOR_MATCH, *BOX_SHARES, *RECON],
         ["latent_final.png"], seeds=SEEDS),
    _exp("s8_aae_boxes_unlabelled", "s8_aae", ["--preset", "unlabelled_boxes"],
         "8. Adversarial autoencoder", "Ten boxes without labels: the same conditioned game, each batch's codes sent "
         "to the boxes in equal shares by least standardised distance instead of by their digit.",
         [*PRIOR_MATCH, *BOX_SHARES, *RECON, *VALIDATION_PRIOR_MATCH[:3], *VALIDATION_BOX_SHARES],
         ["latent_final.png"], seeds=SEEDS),
    _exp("s9_choice_lecture", "s9_disentangled", ["--preset", "lecture", "--validation"],
         "9. Disentangling style and label",
         "Choosing the recipe on validation styles: the lecture's description (a label adversary on z alone).",
         S9_VALIDATION, ["style_transfer.png"], uses_classifier=True,
         chooses="the recipe of the `recommended` preset: of this entry and s9_disentangled, the lower "
                 "validation leak by both probes"),
    _exp("s9_disentangled", "s9_disentangled", ["--preset", "recommended"], "9. Disentangling style and label",
         "(Text only in the lecture.) A label head and a style z; an adversary keeps the label out of z. "
         "Target: the label readable from z by fair probes no better than 15%.",
         [("label head test accuracy", "label_head_test_accuracy", ".2%"),
          ("label leak: logistic probe on z", "label_leak.logistic.accuracy", ".1%"),
          ("the same, training labels permuted (chance)", "label_leak.logistic.permuted_accuracy", ".1%"),
          ("label leak: 10-NN probe on z", "label_leak.knn.accuracy", ".1%"),
          ("the same, training labels permuted (chance)", "label_leak.knn.permuted_accuracy", ".1%"),
          ("label leak: logistic probe on z, encoder statistics recomputed",
           "recomputed_bn.label_leak.logistic.accuracy", ".1%"),
          ("the same, training labels permuted (chance)", "recomputed_bn.label_leak.logistic.permuted_accuracy", ".1%"),
          ("label leak: 10-NN probe on z, encoder statistics recomputed", "recomputed_bn.label_leak.knn.accuracy",
           ".1%"),
          ("the same, training labels permuted (chance)", "recomputed_bn.label_leak.knn.permuted_accuracy", ".1%"),
          ("label head test accuracy, encoder statistics recomputed", "recomputed_bn.label_head_accuracy", ".2%"),
          ("style transfer classified as the target label", "style_transfer_accuracy.overall", ".1%"), *S9_VALIDATION],
         ["style_transfer.png", "style_by_label.png"], uses_classifier=True, seeds=SEEDS,
         note="The validation numbers that chose the recipe read the styles with the encoder's BatchNorm statistics "
              "recomputed over the training images after training (its running statistics lag the adversarial "
              "updates); the rows marked 'encoder statistics recomputed' are that same evaluation on the test set."),
    _exp("s10_choice_epochs", "s10_semi_supervised",
         ["--preset", "lecture", "--labels", "100", "--validation", "--epochs", str(S10_CHOICE_EPOCHS)],
         "10. Semi-supervised AAE",
         "Choosing the epoch count of section 10 (the lecture gives none) on the validation error of the paper's "
         "phases with 100 labels.",
         [("lowest validation error", "validation_best_error", ".2%"),
          ("its epoch", "validation_best_epoch", "d"),
          ("validation error by epoch", "validation_error_by_epoch", ".4f")],
         S10_FIGURES, uses_classifier=True, chooses=f"the epochs of the section 10 entries ({S10_EPOCHS}), within the CPU budget"),
    _exp("s10_ssl_100", "s10_semi_supervised", ["--preset", "lecture", "--labels", "100", *S10_PROTOCOL],
         "10. Semi-supervised AAE",
         "(Text only in the lecture.) Makhzani et al. (2015): 1.90% (+-0.10) test error with 100 labels.",
         [("test error", "test_error", ".2%"), *S10_STYLE], S10_FIGURES, seeds=SEEDS, label_seeds=True,
         uses_classifier=True, note=S10_NOTE),
    _exp("s10_ssl_1000", "s10_semi_supervised", ["--preset", "lecture", "--labels", "1000", *S10_PROTOCOL],
         "10. Semi-supervised AAE", "With 1000 labels (the paper: 1.60% +-0.08).",
         [("test error", "test_error", ".2%"), *S10_STYLE], S10_FIGURES, seeds=SEEDS, label_seeds=True,
         uses_classifier=True, note=S10_NOTE),
    _exp("s10_ssl_100_recommended", "s10_semi_supervised",
         ["--preset", "recommended", "--labels", "100", *S10_PROTOCOL],
         "10. Semi-supervised AAE", "Beyond the paper: shifted labelled images, pseudo-labels on confident "
         "unlabelled ones, cosine rates (100 labels).", [("test error", "test_error", ".2%"), *S10_STYLE], S10_FIGURES,
         seeds=SEEDS, label_seeds=True, uses_classifier=True, note=S10_NOTE),
    _exp("s10_ssl_1000_recommended", "s10_semi_supervised",
         ["--preset", "recommended", "--labels", "1000", *S10_PROTOCOL],
         "10. Semi-supervised AAE", "The same with 1000 labels.", [("test error", "test_error", ".2%"), *S10_STYLE],
         S10_FIGURES, seeds=SEEDS, label_seeds=True, uses_classifier=True, note=S10_NOTE),
    _exp("s10_clusters16", "s10_semi_supervised", ["--preset", "clustering", *S10_PROTOCOL], "10. Semi-supervised AAE",
         "Unsupervised clustering into 16 categories (the paper: 9.55% error +-0.09).",
         CLUSTERING, ("clusters.png", "error_by_epoch.png"), seeds=SEEDS, note=S10_NOTE),
    _exp("s10_clusters30", "s10_semi_supervised", ["--preset", "clustering", "--clusters", "30", *S10_PROTOCOL],
         "10. Semi-supervised AAE", "Unsupervised clustering into 30 categories (the paper: 4.10% error +-0.13).",
         CLUSTERING, ("clusters.png", "error_by_epoch.png"), seeds=SEEDS, note=S10_NOTE),
    _exp("s10_clusters16_recommended", "s10_semi_supervised", ["--preset", "recommended_clustering", *S10_PROTOCOL],
         "10. Semi-supervised AAE",
         "Beyond the paper: clustering into 16 categories with the label head's information terms (batch balance, "
         "confidence, shift invariance) in a phase of their own at the autoencoder's rate (the paper: 9.55%).",
         (*CLUSTERING, *CLUSTERING_VALIDATION), ("clusters.png", "error_by_epoch.png"), seeds=SEEDS, note=S10_NOTE),
    _exp("s10_clusters16_recommended_10_epochs", "s10_semi_supervised",
         ["--preset", "recommended_clustering", *_s10_protocol(10)], "10. Semi-supervised AAE",
         "The same trained twice as long: seed 42's validation error by epoch, followed for 10 epochs, was lowest "
         "at the last (11.2%, against 12.9% in the first 5).",
         (*CLUSTERING, *CLUSTERING_VALIDATION), ("clusters.png", "error_by_epoch.png"), seeds=SEEDS,
         note=_s10_note(10)),
    _exp("s10_clusters30_recommended", "s10_semi_supervised",
         ["--preset", "recommended_clustering", "--clusters", "30", *S10_PROTOCOL], "10. Semi-supervised AAE",
         "The same into 30 categories (the paper: 4.10%).",
         (*CLUSTERING, *CLUSTERING_VALIDATION), ("clusters.png", "error_by_epoch.png"), seeds=SEEDS, note=S10_NOTE),
)
BY_NAME = {e.name: e for e in EXPERIMENTS}
MANIFEST = "reproduce.json"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="aejax reproduce", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/reproduce"),
                        help="folder of the runs and the report")
    parser.add_argument("--quick", action="store_true",
                        help=f"every script's --quick: 1 epoch on {runs.QUICK_TRAIN_EXAMPLES} train / "
                             f"{runs.QUICK_TEST_EXAMPLES} test images")
    parser.add_argument("--only", default=None, help="comma-separated experiment names (see --list); default: all")
    parser.add_argument("--list", action="store_true", help="list the experiments and exit")
    parser.add_argument("--force", action="store_true", help="rerun experiments already completed with the same flags")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: write the report from the runs already in --out (any that have metrics.json)")
    parser.add_argument("--no-html", action="store_true", help="write REPORT.md only (the HTML inlines every figure)")
    parser.add_argument("--data-dir", type=pathlib.Path, default=None, help="folder with the four MNIST IDX files")
    parser.add_argument("--seed", type=int, default=42, help="seed of every experiment")
    parser.add_argument("--train-limit", type=_positive_int, default=None, help="first N training images only")
    parser.add_argument("--test-limit", type=_positive_int, default=None, help="first N test images only")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--jobs", type=_positive_int, default=1,
                        help="runs at once, each in a process of its own writing <out>/logs/<run>.log "
                             "(on a machine with room for several); 1: one after another, in this process")
    args = parser.parse_args(argv)
    args.command_line = list(sys.argv[1:] if argv is None else argv)
    if args.only is not None:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in BY_NAME]
        if unknown or not names:
            parser.error(f"unknown experiment(s) {', '.join(unknown) or repr(args.only)}; "
                         f"choose from {', '.join(BY_NAME)}")
        args.only = names
    try:
        runs.check_writable(args.out)
    except runs.UsageError as e:
        parser.error(str(e))
    return args


def units(experiment: Experiment, args: argparse.Namespace) -> list[Unit]:
    """The runs of an entry: one per seed, with the script's command line (without --out,
    --data-dir and --no-progress, which do not change results)."""
    result = []
    for seed in experiment.seeds:
        argv = [*experiment.flags, "--seed", str(seed)]
        argv += ["--label-seed", str(seed - DEFAULT_SEED)] if experiment.label_seeds else []
        argv += ["--quick"] if args.quick else []
        argv += [] if args.train_limit is None else ["--train-limit", str(args.train_limit)]
        argv += [] if args.test_limit is None else ["--test-limit", str(args.test_limit)]
        if experiment.uses_classifier:
            argv += ["--classifier", str((args.out / "classifier").absolute())]
        folder = experiment.name if len(experiment.seeds) == 1 else f"{experiment.name}/seed{seed}"
        result.append(Unit(experiment, seed, folder, tuple(argv)))
    return result


def _read_manifest(out: pathlib.Path) -> dict[str, Any]:
    path = out / MANIFEST
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}  # a damaged manifest only costs the failures' messages


def _write_manifest(out: pathlib.Path, manifest: dict[str, Any]) -> None:
    temporary = out / f".{MANIFEST}.{os.getpid()}"
    temporary.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(temporary, out / MANIFEST)  # atomic: never half a manifest


def _json_ready(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def expected_settings(unit: Unit) -> dict[str, Any]:
    """The settings a run of ``unit`` records (its config's command-line fields and the options
    that change numbers), from its command line and the experiment's own parser."""
    module = importlib.import_module(f"aejax.experiments.{unit.experiment.module}")
    config, options, _ = runs.parse(module.Config(), module.PRESETS, [*unit.argv, "--out", "."],
                                    module.__doc__, unit.experiment.module, quick=getattr(module, "QUICK", None))
    on_command_line = {name for name, (_, field, _) in flags.leaf_fields(config).items()
                       if field.metadata.get("cli", True)}
    settings = {k: v for k, v in flags.as_flat_dict(config).items() if k in on_command_line}
    # the preset is only a name for fields compared one by one
    settings.update(quick=options.quick, train_limit=options.train_limit, test_limit=options.test_limit)
    return _json_ready(settings)


def is_complete(out: pathlib.Path, unit: Unit) -> bool:
    """Whether ``<out>/<unit folder>/metrics.json`` holds a run of this command line with every headline number.

    Settings a run did not record take their default (a field added since keeps old runs
    valid where its default is what they ran); a headline number it lacks makes it rerun.
    """
    path = out / unit.folder / "metrics.json"
    if not path.is_file():
        return False
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError:
        return False
    recorded = metrics.get("settings", {})
    module = importlib.import_module(f"aejax.experiments.{unit.experiment.module}")
    defaults = _json_ready(flags.as_flat_dict(module.Config()))
    for name, value in expected_settings(unit).items():
        if recorded.get(name, defaults.get(name)) != value:
            return False
    return all(_lookup(metrics, key) is not None for _, key, _ in unit.experiment.headline)


def _run_argv(unit: Unit, args: argparse.Namespace) -> list[str]:
    """The script's full command line for ``unit``: its own, plus the output folder and the options
    that do not change results."""
    argv = [*unit.argv, "--out", str(args.out / unit.folder)]
    argv += ["--no-progress"] if args.no_progress else []
    return argv + ([] if args.data_dir is None else ["--data-dir", str(args.data_dir)])


def _run_here(unit: Unit, args: argparse.Namespace) -> dict[str, Any]:
    """Runs ``unit`` in this process; its status entry. Its compiled programs are dropped
    afterwards: each keeps memory mappings, and a long series of runs in one process would
    otherwise reach the kernel's limit on them (vm.max_map_count), where XLA crashes."""
    try:
        importlib.import_module(f"aejax.experiments.{unit.experiment.module}").main(_run_argv(unit, args))
        return {"status": "done"}
    except SystemExit as e:  # argparse's usage errors inside a script: a bug in this table
        return {"status": "failed", "error": f"exit {e.code}"}
    except Exception as e:  # one failure must not stop the others; the report shows it
        traceback.print_exc()
        return {"status": "failed", "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    finally:
        jax.clear_caches()


def log_path(out: pathlib.Path, unit: Unit) -> pathlib.Path:
    """Where a run started with ``--jobs`` > 1 writes its output: ``<out>/logs/<unit folder, / as ->.log``."""
    return out / "logs" / f"{unit.folder.replace('/', '-')}.log"


def _start(unit: Unit, args: argparse.Namespace) -> subprocess.Popen:
    """Starts ``unit`` as ``python -m aejax.cli run <script> ...``, its output into ``log_path``."""
    log = log_path(args.out, unit)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as stream:  # the child keeps its own handle
        return subprocess.Popen([sys.executable, "-m", "aejax.cli", "run", unit.experiment.module,
                                 *_run_argv(unit, args)], stdout=stream, stderr=subprocess.STDOUT)


def _last_line(path: pathlib.Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    """Runs the selected entries' incomplete runs (``args.jobs`` at once); returns the manifest
    (failures, wall times)."""
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(args.out)
    selected = [u for e in EXPERIMENTS if args.only is None or e.name in args.only for u in units(e, args)]
    labels = {u.folder: f"[{number}/{len(selected)}] {u.folder}" for number, u in enumerate(selected, 1)}
    pending = []
    for unit in selected:
        if not args.force and is_complete(args.out, unit):
            print(f"{labels[unit.folder]}: complete, skipped (--force reruns it)", flush=True)
        else:
            pending.append(unit)

    def finish(unit: Unit, entry: dict[str, Any], started: float) -> None:
        entry.update(argv=list(unit.argv), wall_seconds=time.perf_counter() - started,
                     finished=datetime.datetime.now().isoformat(timespec="seconds"))
        manifest[unit.folder] = entry
        _write_manifest(args.out, manifest)
        print(f"{labels[unit.folder]}: {entry['status']} in {entry['wall_seconds']:.0f} s"
              + (f" ({entry['error']})" if "error" in entry else ""), flush=True)

    running: dict[str, tuple[Unit, subprocess.Popen, float]] = {}
    while pending or running:
        while pending and len(running) < args.jobs:
            unit = pending.pop(0)
            print(f"{labels[unit.folder]}: aejax run {unit.experiment.module} {' '.join(unit.argv)}", flush=True)
            if args.jobs == 1:
                started = time.perf_counter()
                finish(unit, _run_here(unit, args), started)
            else:
                running[unit.folder] = (unit, _start(unit, args), time.perf_counter())
        for folder, (unit, process, started) in list(running.items()):
            if process.poll() is not None:
                del running[folder]
                entry = {"status": "done"} if process.returncode == 0 else {
                    "status": "failed",
                    "error": f"exit {process.returncode}: {_last_line(log_path(args.out, unit))[:300]}"}
                finish(unit, entry, started)
        if running:
            time.sleep(0.5)
    return manifest


def _lookup(metrics: dict[str, Any], path: str) -> Any:
    value: Any = metrics
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _format(value: Any, spec: str) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, list):
        return "none" if not value else ", ".join(_format(v, spec) for v in value)
    try:
        return format(value, spec)
    except (TypeError, ValueError):
        return str(value)


def summarize(values: list[Any], spec: str) -> str:
    """One number per seed -> ``mean +- sd (n seeds: a, b, c)``; one run -> its value."""
    if len(values) == 1:
        return _format(values[0], spec)
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(numbers) != len(values):  # lists or missing values: each seed's, side by side
        return " / ".join(_format(v, spec) for v in values)
    mean, sd = statistics.fmean(numbers), statistics.stdev(numbers)
    return (f"{_format(mean, spec)} +- {_format(sd, spec)} ({len(numbers)} seeds: "
            f"{', '.join(_format(v, spec) for v in numbers)})")


def _shown(argv: tuple[str, ...]) -> list[str]:
    """A unit's command line as the report shows it: the seed apart, no machine-specific classifier path."""
    shown, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--classifier", "--seed", "--label-seed"):
            skip = True
        else:
            shown.append(arg)
    return shown


def protocol_text(metrics: dict[str, Any]) -> str:
    """Which images trained, chose and scored the run, from its metrics.json."""
    protocol = metrics.get("protocol") or {}
    sizes = protocol.get("split_sizes") or {}
    watched = {k: v for k, v in protocol.items() if k not in ("validation", "split_sizes")}
    if watched:  # what the run followed or chose on, in its own words
        return protocol_text({**metrics, "protocol": {"validation": protocol.get("validation"),
                                                      "split_sizes": sizes}}) + "; " + ", ".join(
            f"{k.replace('_', ' ')}: {v}" for k, v in sorted(watched.items()))
    if protocol.get("validation"):
        return (f"validation protocol: trained on {sizes.get('train', '?'):,} images; "
                f"{sizes.get('validation', '?'):,} held out to follow and choose; "
                f"{sizes.get('test', '?'):,} test images read once, at the end")
    if sizes:
        return (f"the lecture's protocol: trained on all {sizes.get('train', '?'):,} training images, "
                f"scored on {sizes.get('test', '?'):,} test images")
    return "the lecture's protocol: trained on all training images"


@dataclasses.dataclass
class ReportEntry:
    experiment: Experiment
    status: str  # done | partial (k of n runs) | failed | not run
    command: str
    numbers: list[tuple[str, str]]  # (label, formatted value or mean +- sd)
    figures: list[str]  # paths relative to the report
    wall_seconds: float | None  # all of the entry's runs
    wall_label: str  # what ``wall_seconds`` measured
    device: str | None
    protocol: str
    error: str | None = None
    time_split: str | None = None  # ``wall_time_split`` of the entry's runs


SPLIT_PARTS = ("data", "compile", "train", "classifier", "evaluation", "figures")  # metrics.json's ``seconds``


def wall_time_split(seconds: list[dict[str, float]]) -> str | None:
    """The runs' summed ``seconds`` parts, then evaluation and figures as a share of the total:
    "data 1 s, compile 40 s, train 900 s, evaluation 60 s, figures 2 s; evaluation and figures
    6.4% of 963 s". None unless every run recorded a total."""
    if not seconds or any(not s or s.get("total") is None for s in seconds):
        return None
    total = sum(s["total"] for s in seconds)
    parts = [f"{name} {sum(s.get(name) or 0 for s in seconds):.0f} s" for name in SPLIT_PARTS
             if any(name in s for s in seconds)]
    late = sum((s.get("evaluation") or 0) + (s.get("figures") or 0) for s in seconds)
    return f"{', '.join(parts)}; evaluation and figures {100 * late / total:.1f}% of {total:.0f} s"


def collect(out: pathlib.Path, manifest: dict[str, Any], args: argparse.Namespace) -> list[ReportEntry]:
    """One entry per registry entry, from its runs' metrics.json (complete ones) and the manifest."""
    entries = []
    for experiment in EXPERIMENTS:
        entry_units = units(experiment, args)
        done = [u for u in entry_units if is_complete(out, u)]
        metrics = [json.loads((out / u.folder / "metrics.json").read_text()) for u in done]
        errors = [manifest[u.folder]["error"] for u in entry_units
                  if u not in done and manifest.get(u.folder, {}).get("status") == "failed"]
        status = ("done" if len(done) == len(entry_units) else "failed" if errors
                  else f"partial ({len(done)} of {len(entry_units)} runs)" if done else "not run")
        first = entry_units[0]
        seeds = f"  (seeds {', '.join(str(u.seed) for u in entry_units)})" if len(entry_units) > 1 else ""
        command = f"aejax run {experiment.module} {' '.join(_shown(first.argv))}{seeds}"
        # a run that recorded no total (older runs) gives its training time, and the report says so
        walls = [(m.get("seconds") or {}).get("total") for m in metrics]
        wall_label = "wall time (all runs)"
        if None in walls:
            walls = [(m.get("seconds") or {}).get("train", m.get("train_seconds")) for m in metrics]
            wall_label = "training time (all runs)"
        numbers = [(label, summarize([_lookup(m, key) for m in metrics], spec))
                   for label, key, spec in experiment.headline] if metrics else []
        figures = [f"{done[0].folder}/{f}" for f in experiment.figures if done and (out / done[0].folder / f).is_file()]
        entries.append(ReportEntry(
            experiment, status, command.strip(), numbers, figures,
            sum(walls) if walls and None not in walls else None, wall_label,
            metrics[0].get("device") if metrics else None,
            protocol_text(metrics[0]) if metrics else "", errors[0] if errors else None,
            wall_time_split([m.get("seconds") for m in metrics])))
    return entries


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a bare | would end the table cell


def render_markdown(entries: list[ReportEntry], header: dict[str, str]) -> str:
    lines = ["# aejax reproduces the autoencoder lecture", ""]
    lines += [f"- {k}: {v}" for k, v in header.items()] + [""]
    lines += ["| entry | status | headline | time |", "|---|---|---|---|"]
    for e in entries:
        first = "; ".join(f"{label} {value}" for label, value in e.numbers[:1])
        wall = "" if e.wall_seconds is None else f"{e.wall_seconds:.0f} s"
        lines.append(f"| [{e.experiment.name}](#{e.experiment.name}) | {e.status} | {_cell(first)} | {wall} |")
    section = None
    for e in entries:
        if e.experiment.section != section:
            section = e.experiment.section
            lines += ["", f"## {section}"]
        lines += ["", f"### {e.experiment.name}", "", f"**Claim:** {e.experiment.claim}", "", f"`{e.command}`", ""]
        if e.protocol:
            lines += [f"*Protocol:* {e.protocol}.", ""]
        if e.experiment.note:
            lines += [f"*Note:* {e.experiment.note}", ""]
        if e.experiment.chooses:
            lines += [f"*Chooses:* {e.experiment.chooses}.", ""]
        if e.status != "done":
            lines += [f"**{e.status}**" + (f": {e.error}" if e.error else ""), ""]
        if e.numbers:
            lines += ["| measured | value |", "|---|---|"] + [f"| {_cell(label)} | {_cell(value)} |"
                                                             for label, value in e.numbers]
            lines += [f"| {e.wall_label} | {'n/a' if e.wall_seconds is None else f'{e.wall_seconds:.0f} s'} |"]
            lines += [f"| wall time split (all runs) | {e.time_split} |"] if e.time_split else []
            lines += [f"| device | {e.device or 'n/a'} |", ""]
        lines += [f"![{e.experiment.name}: {pathlib.Path(f).stem}]({f})" for f in e.figures]
    return "\n".join(lines) + "\n"


def render_html(entries: list[ReportEntry], header: dict[str, str], out: pathlib.Path) -> str:
    """The report as one HTML file, PNG figures inlined (base64), GIFs linked."""
    esc = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>aejax: the autoencoder lecture, reproduced</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}img{max-width:100%;margin:4px}"
             ".failed{color:#b00}code{background:#f4f4f4}</style></head><body>",
             "<h1>aejax reproduces the autoencoder lecture</h1><ul>"]
    parts += [f"<li>{esc(k)}: {esc(v)}</li>" for k, v in header.items()] + ["</ul>"]
    section = None
    for e in entries:
        if e.experiment.section != section:
            section = e.experiment.section
            parts.append(f"<h2>{esc(section)}</h2>")
        parts += [f"<h3 id='{esc(e.experiment.name)}'>{esc(e.experiment.name)}</h3>",
                  f"<p><b>Claim:</b> {esc(e.experiment.claim)}</p><p><code>{esc(e.command)}</code></p>"]
        parts += [f"<p><i>Protocol:</i> {esc(e.protocol)}.</p>"] if e.protocol else []
        parts += [f"<p><i>Note:</i> {esc(e.experiment.note)}</p>"] if e.experiment.note else []
        parts += [f"<p><i>Chooses:</i> {esc(e.experiment.chooses)}.</p>"] if e.experiment.chooses else []
        if e.status != "done":
            parts.append(f"<p class='failed'><b>{esc(e.status)}</b>{': ' + esc(e.error) if e.error else ''}</p>")
        if e.numbers:
            wall = "n/a" if e.wall_seconds is None else f"{e.wall_seconds:.0f} s"
            rows = [*e.numbers, (e.wall_label, wall), *([("wall time split (all runs)", e.time_split)]
                                                        if e.time_split else []), ("device", e.device or "n/a")]
            parts.append("<table>" + "".join(f"<tr><td>{esc(a)}</td><td>{esc(b)}</td></tr>" for a, b in rows) + "</table>")
        for figure in e.figures:
            if figure.endswith(".png"):
                encoded = base64.b64encode((out / figure).read_bytes()).decode()
                parts.append(f"<img alt='{esc(figure)}' src='data:image/png;base64,{encoded}'>")
            else:
                parts.append(f"<p><a href='{esc(figure)}'>{esc(figure)}</a></p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(out: pathlib.Path, manifest: dict[str, Any], args: argparse.Namespace) -> pathlib.Path:
    """REPORT.md and REPORT.html in ``out`` (each written atomically)."""
    entries = collect(out, manifest, args)
    import jax  # late: ``--help`` and usage errors need no JAX

    mode = ("quick (data subsets, 1 epoch: checks the pipeline, not the lecture's numbers)" if args.quick
            else "full (the lecture's epochs and data)")
    header = {
        "mode": f"report of the runs found in {args.out}" if args.report_only else mode,
        "command": " ".join(["aejax reproduce", *args.command_line]),
        "device": (f"{jax.devices()[0].platform}: {jax.devices()[0].device_kind} (host {platform.node()})"
                   if not args.report_only else "each run's own (below)"),
        "written": datetime.datetime.now().isoformat(timespec="seconds"),
        "total time": f"{sum(e.wall_seconds or 0 for e in entries):.0f} s (each run's wall time from its "
                      f"metrics.json, its training time where it recorded no total)",
        "protocol": "choices (epochs, schedules, recipes, cluster labels, probe settings) on a validation split held "
                    "out of the training set, or the lecture's fixed settings; the test set read once per run",
        "complete": f"{sum(e.status == 'done' for e in entries)} of {len(entries)} entries",
    }
    pages = [("REPORT.md", render_markdown(entries, header))]
    pages += [] if args.no_html else [("REPORT.html", render_html(entries, header, out))]
    for name, text in pages:
        temporary = out / f".{name}.{os.getpid()}"
        temporary.write_text(text)
        os.replace(temporary, out / name)
    return out / "REPORT.md"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.list:
        for e in EXPERIMENTS:
            seeds = f"  (seeds {', '.join(map(str, e.seeds))})" if len(e.seeds) > 1 else ""
            print(f"{e.name:30s} {e.section}: aejax run {e.module} {' '.join(e.flags)}{seeds}")
        return {}
    manifest = _read_manifest(args.out) if args.report_only else run_all(args)
    report = write_report(args.out, manifest, args)
    failed = [name for name, entry in manifest.items() if entry["status"] != "done"
              and (args.only is None or name.split("/")[0] in args.only)]
    print(f"report: {report}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return {"report": str(report), "failed": failed, "manifest": manifest}


if __name__ == "__main__":
    result = main()
    raise SystemExit(1 if result.get("failed") else 0)
