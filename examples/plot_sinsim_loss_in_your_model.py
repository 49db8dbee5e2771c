"""
SinSimLoss in your own training loop
====================================

:class:`sinsim_ext.SinSimLoss` is an ordinary ``nn.Module``: SimCLR's NT-Xent
on the projections ``z`` plus ``lambda`` times a Sinkhorn term between the two
views' batches of features ``h``. Nothing of the project's trainer is needed.
This example trains a small encoder of its own on scikit-learn's 8x8 digits
(bundled, no download) for a few seconds and probes its features with a
logistic regression. It shows how to call the loss, not whether the term
helps: that question needs the paper protocol's budgets
(:doc:`/trainer/paper`).
"""

import matplotlib.pyplot as plt
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from torch import nn

import sinsim_ext

torch.manual_seed(0)
digits = load_digits()
images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (1797, 1, 8, 8)
labels = digits.target
train, test = slice(0, 1400), slice(1400, None)

# %%
# A model of your own: an encoder giving features ``h`` and a projection
# head giving ``z``.
encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 64))
head = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32))


def augment(batch):
    """Two cheap views: a random shift of up to one pixel and pixel noise."""
    shift = torch.randint(-1, 2, (2,))
    moved = torch.roll(batch, shifts=(int(shift[0]), int(shift[1])), dims=(2, 3))
    return (moved + 0.1 * torch.randn_like(moved)).clamp(0, 1)


# %%
# The loss: NT-Xent + 0.1 x the debiased Sinkhorn divergence between the two
# views' features (eps = 0.05 on L2-normalised features).
loss_fn = sinsim_ext.SinSimLoss(temperature=0.5, weight=0.1, eps=0.05, debias=True)
print(loss_fn)


def features(data):
    with torch.no_grad():
        return encoder(data).numpy()


def probe_accuracy():
    clf = LogisticRegression(max_iter=2000).fit(features(images[train]), labels[train])
    return 100 * clf.score(features(images[test]), labels[test])


before = probe_accuracy()
params = list(encoder.parameters()) + list(head.parameters())
optimizer = torch.optim.Adam(params, lr=1e-3)
history = []
for epoch in range(8):
    order = torch.randperm(1400)
    for start in range(0, 1400, 128):
        batch = images[train][order[start:start + 128]]
        h1, h2 = encoder(augment(batch)), encoder(augment(batch))
        terms = loss_fn.terms(head(h1), head(h2), h1, h2)  # z1, z2, then s1, s2 = h1, h2
        loss = loss_fn.combine(terms)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append((loss.item(), terms["ntxent"].item(), terms["sinkhorn"].item()))
    print(f"epoch {epoch}: loss {history[-1][0]:.3f} (NT-Xent {history[-1][1]:.3f}, "
          f"Sinkhorn {history[-1][2]:.4f}, its marginal error {float(terms['sinkhorn_error']):.1e})")

print(f"linear probe on the features: {before:.1f} % untrained, {probe_accuracy():.1f} % after 8 epochs")

# %%
# ``terms`` gives the two unweighted terms and the Sinkhorn solve's final
# marginal error, a device tensor you can read when you read the loss (no
# extra synchronisation on a GPU).
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot([h[1] for h in history], label="NT-Xent")
ax.plot([10 * h[2] for h in history], label="10 x Sinkhorn divergence")
ax.set_xlabel("step")
ax.legend()
ax.set_title("SinSimLoss terms during training")
fig.tight_layout()
