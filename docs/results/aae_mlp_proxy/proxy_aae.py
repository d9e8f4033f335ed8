"""The AAE game with small MLPs for encoder and decoder, to compare discriminator recipes fast.

A record of how session 7 chose among recipes (README, section 8), not library code. Run from
the repository root with AEJAX_DATA_DIR set, one JSON config per call, e.g.

    PYTHONPATH=. python docs/results/aae_mlp_proxy/proxy_aae.py '{"prior_name": "boxes", "batch": 128, "epochs": 10, "loss_kind": "balanced", "folded": true}'

Prints the config with: share of test codes inside the support after each epoch (with
"labels": inside their own label's box), the codes'
span, and "cover" (share of the prior's 0.25-wide cells holding an inside code). "folded":
the generator term in the autoencoder's Adam (aejax: generator_optimizer="shared");
"cosine": every rate cosine-decayed to 1% over the run.
"""
import sys, time, json, functools
import jax, jax.numpy as jnp, numpy as np, optax, flax.linen as nn
from aejax import data, priors, losses
from aejax.optimizers import torch_adam

class MLP(nn.Module):
    sizes: tuple
    @nn.compact
    def __call__(self, x):
        for s in self.sizes[:-1]:
            x = nn.leaky_relu(nn.Dense(s)(x), 0.2)
        return nn.Dense(self.sizes[-1])(x)

def run(prior_name, batch, epochs, loss_kind="pooled", dlr=1e-3, glr=1e-3, r1=0.0, folded=False, per_code=None, seed=0, dsteps=1, gw=0.01, labels=False, dump=None, standardize=False, cosine=False, in_scale=1.0):
    splits = data.load_mnist()
    X = jnp.asarray(splits["train"].images.reshape(-1, 784) / 255.0, jnp.float32)
    Xt = jnp.asarray(splits["test"].images.reshape(-1, 784) / 255.0, jnp.float32)
    Y, Yt = jnp.asarray(splits["train"].labels, jnp.int32), jnp.asarray(splits["test"].labels, jnp.int32)
    # labels: the discriminator reads (code, one-hot label); prior samples carry their component (aejax: label_conditioning)
    # without labels, in_scale multiplies what the discriminator reads (its edges need in_scale times smaller weights)
    cond = (lambda z, y: jnp.concatenate([z, jax.nn.one_hot(y, 10)], 1)) if labels else (lambda z, y: in_scale * z)
    prior = priors.PRIORS[prior_name]()
    if standardize:  # labels: each component's codes and samples standardised by that component's mean and std
        ref = prior.sample_components(jax.random.key(99), jnp.arange(100_000) % 10).reshape(-1, 10, 2)
        mean, std = ref.mean(0), ref.std(0)
        # in_scale: standardised to std in_scale, so the box's edges need in_scale times smaller weights to be sharp
        cond = lambda z, y: jnp.concatenate([in_scale * (z - mean[y]) / std[y], jax.nn.one_hot(y, 10)], 1)
    per_code = per_code or (20 if prior_name == "uniform" else 10)
    enc, dec, dis = MLP((512, 256, 2)), MLP((256, 512, 784)), MLP((512, 256, 1))
    k = jax.random.split(jax.random.key(seed), 4)
    p = {"e": enc.init(k[0], X[:1])["params"], "d": dec.init(k[1], jnp.zeros((1, 2)))["params"],
         "D": dis.init(k[2], jnp.zeros((1, 12 if labels else 2)))["params"]}
    # cosine: every rate decays to 1% over the run (aejax: AAEConfig.decay_steps)
    rate = (lambda r: optax.cosine_decay_schedule(r, epochs * (X.shape[0] // batch), alpha=0.01)) if cosine else (lambda r: r)
    o_ae, o_g, o_d = torch_adam(rate(1e-3), 1e-6), torch_adam(rate(glr), 1e-6), torch_adam(rate(dlr), 1e-6)
    s = {"ae": o_ae.init({"e": p["e"], "d": p["d"]}), "g": o_g.init(p["e"]), "d": o_d.init(p["D"])}
    bce = lambda lg, t: losses.binary_cross_entropy_with_logits(lg, jnp.full_like(lg, t))

    def adv(pe, pD, x, y):
        return gw * jnp.mean(bce(dis.apply({"params": pD}, cond(enc.apply({"params": pe}, x), y)), 1.0))

    def step(carry, xs):
        p, s = carry
        x, y, key = xs
        def ae_loss(q):
            l = jnp.mean(losses.binary_cross_entropy_with_logits(dec.apply({"params": q["d"]}, enc.apply({"params": q["e"]}, x)), x))
            return l + (adv(q["e"], p["D"], x, y) if folded else 0.0)
        g = jax.grad(ae_loss)({"e": p["e"], "d": p["d"]})
        u, s_ae = o_ae.update(g, s["ae"], {"e": p["e"], "d": p["d"]})
        q = optax.apply_updates({"e": p["e"], "d": p["d"]}, u)
        pe, pd, s_g = q["e"], q["d"], s["g"]
        codes = jax.lax.stop_gradient(enc.apply({"params": pe}, x))
        if not folded:
            g = jax.grad(adv)(pe, p["D"], x, y)
            u, s_g = o_g.update(g, s["g"], pe)
            pe = optax.apply_updates(pe, u)
        pD, s_d = p["D"], s["d"]
        for i in range(dsteps):
            comp = jnp.arange(codes.shape[0] * per_code) % 10
            z = prior.sample_components(jax.random.fold_in(key, i), comp) if labels else prior(jax.random.fold_in(key, i), len(comp))
            def d_loss(pD):
                lc, lp = dis.apply({"params": pD}, cond(codes, y)), dis.apply({"params": pD}, cond(z, comp))
                if loss_kind == "balanced":
                    l = 0.5 * (jnp.mean(bce(lc, 0.)) + jnp.mean(bce(lp, 1.)))
                else:
                    l = jnp.mean(jnp.concatenate([bce(lc, 0.), bce(lp, 1.)]))
                if r1:
                    gz = jax.grad(lambda zz: jnp.sum(dis.apply({"params": pD}, cond(zz, comp[: codes.shape[0]]))))(z[: codes.shape[0]])
                    l = l + 0.5 * r1 * jnp.mean(jnp.sum(gz ** 2, -1))
                return l
            g = jax.grad(d_loss)(pD)
            u, s_d = o_d.update(g, s_d, pD)
            pD = optax.apply_updates(pD, u)
        return ({"e": pe, "d": pd, "D": pD}, {"ae": s_ae, "g": s_g, "d": s_d}), None

    @jax.jit
    def epoch(p, s, key):
        n = X.shape[0] // batch
        idx = jax.random.permutation(key, X.shape[0])[: n * batch].reshape(n, batch)
        keys = jax.random.split(jax.random.fold_in(key, 1), n)
        (p, s), _ = jax.lax.scan(lambda c, xs: step(c, (X[xs[0]], Y[xs[0]], xs[1])), (p, s), (idx, keys))
        return p, s

    t = time.time()
    shares = []
    for e in range(epochs):
        p, s = epoch(p, s, jax.random.fold_in(k[3], e))
        codes = enc.apply({"params": p["e"]}, Xt)
        shares.append(round(float(jnp.mean(prior.component_contains(codes, Yt) if labels else prior.contains(codes))), 3))
    if dump:  # the final test codes and labels, for a closer look
        np.savez(dump, codes=np.asarray(codes), labels=np.asarray(Yt))
    lo, hi = np.asarray(codes.min(0)), np.asarray(codes.max(0))
    # how evenly the support is used: share of prior-support grid cells (0.25 wide) that hold an inside code
    zs = prior(jax.random.key(5), 20000)
    occ = lambda z: set(map(tuple, np.floor(np.asarray(z) / 0.25).astype(int)))
    cover = len(occ(codes[np.asarray(prior.contains(codes))]) & occ(zs)) / len(occ(zs))
    return {"shares": shares, "span": [lo.round(1).tolist(), hi.round(1).tolist()], "cover": round(cover, 2), "s": round(time.time() - t)}

if __name__ == "__main__":
    cfg = json.loads(sys.argv[1])
    print(json.dumps({**cfg, **run(**cfg)}), flush=True)
