"""The lecture's PyTorch models and training steps, written for side-by-side benchmarks.

Encoder, Decoder (optionally conditional: the lecture's CDecoder) and the AAE's
Discriminator as in SPEC sections 2, 5, 7, 8; one training step per family (AE, VAE,
CVAE, AAE) in the lecture's order, with its optimizers (``torch.optim.Adam``, coupled
weight decay). ``LectureMNIST`` is the lecture's item-by-item data set (torchvision's
``ToTensor`` on each image: uint8 -> float in [0, 1], (1, 28, 28)).
"""

from __future__ import annotations

import itertools
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

FAMILIES = ("ae", "vae", "cvae", "aae")


class Encoder(nn.Module):
    """(B, 1, 28, 28) -> (B, latent_dim)."""

    def __init__(self, latent_dim: int):
        super().__init__()
        layers, in_ch = [], 1
        for h in (32, 64, 128, 256):
            layers += [nn.Conv2d(in_ch, h, 3, stride=2, padding=1), nn.BatchNorm2d(h), nn.LeakyReLU()]
            in_ch = h
        layers += [nn.Conv2d(256, 512, 1), nn.BatchNorm2d(512), nn.LeakyReLU(), nn.Flatten(), nn.Linear(2048, latent_dim)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    """(B, latent_dim [+ num_classes]) -> images (B, 1, 28, 28) in (0, 1), the lecture's final Sigmoid."""

    def __init__(self, latent_dim: int, num_classes: int = 0):
        super().__init__()
        self.fc = nn.Linear(latent_dim + num_classes, 512)
        layers = []
        for a, b in ((512, 256), (256, 128), (128, 64), (64, 32), (32, 32)):
            layers += [nn.ConvTranspose2d(a, b, 3, stride=2, padding=1, output_padding=1), nn.BatchNorm2d(b), nn.LeakyReLU()]
        layers += [nn.Conv2d(32, 1, 7, padding=1), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(self.fc(z).view(-1, 512, 1, 1))


class Discriminator(nn.Module):
    def __init__(self, latent_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_dim, 512), nn.BatchNorm1d(512), nn.LeakyReLU(0.2),
                                 nn.Linear(512, 256), nn.BatchNorm1d(256), nn.LeakyReLU(0.2),
                                 nn.Linear(256, 1), nn.Sigmoid())

    def forward(self, z):
        return self.net(z)


class LectureMNIST(torch.utils.data.Dataset):
    """Item by item, as torchvision's MNIST with ``ToTensor``: (image (1, 28, 28) float, label)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        image = torch.from_numpy(self.images[index].astype(np.float32) / 255.0).unsqueeze(0)
        return image, int(self.labels[index])


def lecture_loader(images: np.ndarray, labels: np.ndarray, batch_size: int) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(LectureMNIST(images, labels), batch_size=batch_size, shuffle=True)


def _kld(mu, log_var):
    return torch.mean(-0.5 * torch.sum(1 + log_var - mu ** 2 - log_var.exp(), dim=1), dim=0)


def make_step(family: str, device: str = "cpu", latent_dim: int | None = None,
              ) -> tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], list[nn.Module]]:
    """The lecture's training step for ``family``: ``step(images (B,1,28,28), labels (B,)) -> loss``.

    AE latent 24, Adam 1e-4; VAE latent 2, Adam 1e-4, KL weight 0.005; CVAE latent 2,
    Adam 1e-2, KL weight 0.005; AAE latent 2, three Adams 1e-3 with weight decay 1e-6,
    generator weight 0.01, 20 uniform prior samples per code. Returns the step and its modules.
    """
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    if family == "ae":
        latent = latent_dim or 24
        encoder, decoder = Encoder(latent).to(device), Decoder(latent).to(device)
        optimizer = torch.optim.Adam(itertools.chain(encoder.parameters(), decoder.parameters()), lr=1e-4)

        def step(images, labels):
            optimizer.zero_grad()
            loss = F.binary_cross_entropy(decoder(encoder(images)), images)
            loss.backward()
            optimizer.step()
            return loss

        return step, [encoder, decoder]
    if family in ("vae", "cvae"):
        latent = latent_dim or 2
        num_classes = 10 if family == "cvae" else 0
        encoder, decoder = Encoder(2 * latent).to(device), Decoder(latent, num_classes).to(device)
        optimizer = torch.optim.Adam(itertools.chain(encoder.parameters(), decoder.parameters()),
                                     lr=1e-2 if family == "cvae" else 1e-4)

        def step(images, labels):
            optimizer.zero_grad()
            moments = encoder(images)
            mu, log_var = moments[:, :latent], moments[:, latent:]
            z = torch.randn_like(mu) * torch.exp(0.5 * log_var) + mu
            if num_classes:
                z = torch.cat([z, F.one_hot(labels, num_classes).float()], dim=1)
            loss = F.binary_cross_entropy(decoder(z), images) + 0.005 * _kld(mu, log_var)
            loss.backward()
            optimizer.step()
            return loss

        return step, [encoder, decoder]
    latent = latent_dim or 2
    encoder, decoder, discriminator = Encoder(latent).to(device), Decoder(latent).to(device), Discriminator(latent).to(device)
    ae_optimizer = torch.optim.Adam(itertools.chain(encoder.parameters(), decoder.parameters()), lr=1e-3, weight_decay=1e-6)
    gen_optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-3, weight_decay=1e-6)
    dis_optimizer = torch.optim.Adam(discriminator.parameters(), lr=1e-3, weight_decay=1e-6)

    def step(images, labels):
        ae_optimizer.zero_grad()
        ae_loss = F.binary_cross_entropy(decoder(encoder(images)), images)
        ae_loss.backward()
        ae_optimizer.step()
        latent_codes = encoder(images)
        gen_optimizer.zero_grad()
        gen_loss = 0.01 * F.binary_cross_entropy(discriminator(latent_codes), torch.ones_like(latent_codes[:, :1]))
        gen_loss.backward()
        gen_optimizer.step()
        dis_optimizer.zero_grad()
        negative = latent_codes.detach()
        positive = torch.rand(negative.shape[0] * 20, negative.shape[1], device=negative.device) * 5 - 2.5
        predictions = torch.cat([discriminator(negative), discriminator(positive)])
        targets = torch.cat([torch.zeros(negative.shape[0], 1), torch.ones(positive.shape[0], 1)]).to(negative.device)
        dis_loss = F.binary_cross_entropy(predictions, targets)
        dis_loss.backward()
        dis_optimizer.step()
        return ae_loss

    return step, [encoder, decoder, discriminator]
