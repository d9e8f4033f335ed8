"""Section 8: the adversarial autoencoder (latent 2) with a chosen prior.

Three Adam(1e-3, weight decay 1e-6) optimizers, generator weight 0.01, 10 epochs.
The lecture's two runs:

    python -m experiments.s8_aae --prior uniform --batch-size 512 --out runs/s8_aae_uniform
    python -m experiments.s8_aae --prior boxes --batch-size 128 --prior-samples-per-code 10 --out runs/s8_aae_boxes

and each with ``--discriminator-norm none`` (or ``batch_joint``), the corrected
discriminator. ``--label-conditioning`` (mixture priors: boxes, mixture) gives the
discriminator each code's one-hot label and each prior sample's component, so digit k
fills box k (Makhzani et al. 2015, section 2.3); metrics.json then also reports the
share of test codes inside their own label's box (``inside_own_component``). Figures: prior samples; test codes after every epoch (frames and a
GIF); the final test codes; images decoded on a 50x50 grid over the codes' bounding
box. metrics.json: the share of test codes inside the prior's support and the final
discriminator's balanced accuracy on test codes vs prior samples (both eval mode),
as trained (running statistics) and with the encoder's BatchNorm statistics recomputed
for its final weights (``prior_match_recomputed_bn``, figure latent_final_recomputed_bn.png),
test reconstruction BCE/MSE.
"""

from __future__ import annotations

import jax
import numpy as np

from aejax import aae, data, plots, priors
from aejax import train as train_lib
from experiments import common

GRID_STEPS = 50


def main(argv: list[str] | None = None) -> dict:
    parser = common.make_parser(__doc__.split("\n")[0], out="runs/s8_aae", epochs=10, latent_dim=None, batch_size=512)
    parser.add_argument("--prior", choices=sorted(priors.PRIORS), default="uniform",
                        help="uniform: [-2.5, 2.5]^2; boxes: the lecture's ten boxes; gaussian: N(0, I); "
                             "mixture: 10 Gaussians on a circle")
    parser.add_argument("--discriminator-norm", choices=aae.DISCRIMINATOR_NORMS, default="batch_separate",
                        help="batch_separate: the lecture's BatchNorm, codes and prior samples normalised "
                             "separately; batch_joint / none: the corrections")
    parser.add_argument("--discriminator-loss", choices=aae.DISCRIMINATOR_LOSSES, default="pooled",
                        help="pooled: the lecture's one BCE over codes and prior samples (20:1); balanced: "
                             "codes and prior samples weigh the same")
    parser.add_argument("--generator-weight", type=common.non_negative_float, default=0.01,
                        help="weight of the generator (encoder-fools-discriminator) loss")
    parser.add_argument("--prior-samples-per-code", type=common.positive_int, default=20,
                        help="prior samples the discriminator sees per code (the lecture: 20 uniform, 10 boxes)")
    parser.add_argument("--learning-rate", type=common.positive_float, default=1e-3, help="Adam learning rate of all three optimizers")
    parser.add_argument("--generator-learning-rate", type=common.positive_float, default=None,
                        help="the generator phase's own rate (default: --learning-rate)")
    parser.add_argument("--discriminator-learning-rate", type=common.positive_float, default=None,
                        help="the discriminator's own rate (default: --learning-rate)")
    parser.add_argument("--generator-optimizer", choices=aae.GENERATOR_OPTIMIZERS, default="separate",
                        help="separate: the lecture's third Adam for the generator; shared: the generator term "
                             "joins the autoencoder loss under its Adam")
    parser.add_argument("--gradient-penalty", type=common.non_negative_float, default=0.0,
                        help="R1 weight gamma on prior samples (needs --discriminator-norm none); 0: none, the lecture")
    parser.add_argument("--label-conditioning", action="store_true",
                        help="the discriminator sees each code's one-hot label (prior: its component); "
                             "needs a mixture prior with 10 components (boxes, mixture)")
    parser.add_argument("--standardize-components", action="store_true",
                        help="with --label-conditioning: the discriminator sees each code and prior sample "
                             "standardised by its component's mean and std")
    common.add_lr_schedule_flag(parser)
    args = common.parse(parser, argv)
    if args.label_conditioning and args.prior not in ("boxes", "mixture"):
        parser.error(f"--label-conditioning needs a mixture prior (boxes or mixture), got --prior {args.prior}")
    if args.standardize_components and not args.label_conditioning:
        parser.error("--standardize-components needs --label-conditioning")
    if args.gradient_penalty > 0 and args.discriminator_norm != "none":
        parser.error("--gradient-penalty needs --discriminator-norm none")
    if args.generator_optimizer == "shared" and args.generator_learning_rate is not None:
        parser.error("--generator-learning-rate needs --generator-optimizer separate")
    splits = common.load_data(args)
    prior = priors.PRIORS[args.prior]()
    config = aae.AAEConfig(learning_rate=args.learning_rate, generator_learning_rate=args.generator_learning_rate,
                           discriminator_learning_rate=args.discriminator_learning_rate,
                           generator_weight=args.generator_weight,
                           prior_samples_per_code=args.prior_samples_per_code,
                           discriminator_norm=args.discriminator_norm, discriminator_loss=args.discriminator_loss,
                           gradient_penalty=args.gradient_penalty, generator_optimizer=args.generator_optimizer,
                           label_conditioning=args.label_conditioning,
                           standardize_components=args.standardize_components,
                           decay_steps=common.decay_steps(args, splits["train"]))
    model = aae.make_model(config, prior)
    keys = jax.random.split(jax.random.key(args.seed), 3)
    test_set = data.device_dataset(splits["test"])
    labels = splits["test"].labels
    with common.output(args) as out:
        plots.plot_latent_scatter(np.asarray(prior(keys[0], 10_000)), None, out / "prior_samples.png",
                                  title=f"10,000 samples of the prior: {prior.name}")

        def plot_epoch(epoch: int, state: train_lib.TrainState, _means: dict) -> None:
            codes = train_lib.evaluate(model, state.params, state.batch_stats, test_set)["latents"]
            plots.plot_latent_scatter(codes, labels, out / "frames" / f"latent_epoch{epoch:02d}.png",
                                      title=f"test codes after epoch {epoch} (eval mode)")

        state, history, seconds = common.fit(model, splits, args, keys[1], out, on_epoch_end=plot_epoch)
        # from the files: a resumed run plotted its first epochs in an earlier process
        frames = [out / "frames" / f"latent_epoch{epoch:02d}.png" for epoch in range(1, len(history.epochs) + 1)]
        plots.save_frames_gif(frames, out / "latent_epochs.gif")
        result = train_lib.evaluate(model, state.params, state.batch_stats, test_set)
        codes = result["latents"]
        plots.plot_latent_scatter(codes, labels, out / "latent_final.png",
                                  title=f"test codes, prior {prior.name}, discriminator {args.discriminator_norm}")
        low, high = codes.min(0), codes.max(0)
        plots.plot_image_grid(common.decode_on_grid(model, state, low, high, GRID_STEPS), out / "grid.png",
                              title=f"decoded over the codes' box [{low[0]:.1f}, {high[0]:.1f}] x "
                                    f"[{low[1]:.1f}, {high[1]:.1f}] (rows z[0], columns z[1])")
        # eval mode with the encoder's statistics recomputed for its final weights (see
        # train.recompute_batch_stats): the running averages lag an adversarially moving encoder
        precise_stats = common.recomputed_batch_stats(model, state, splits, args, keys[2])
        precise_codes = train_lib.evaluate(model, state.params, precise_stats, test_set)["latents"]
        plots.plot_latent_scatter(precise_codes, labels, out / "latent_final_recomputed_bn.png",
                                  title="test codes, encoder statistics recomputed for the final weights")
        metrics = {
            "prior_match": aae.prior_match(config, state.params, state.batch_stats, codes, prior, keys[2], labels),
            "prior_match_recomputed_bn": aae.prior_match(config, state.params, precise_stats, precise_codes,
                                                         prior, keys[2], labels),
            **common.reconstruction_metrics(result),
            "train_history": history.epochs,
            "train_seconds": seconds,
        }
        common.save_state(out, state)
        common.write_metrics(out, metrics, args)
    return metrics


if __name__ == "__main__":
    common.run_main(main)
