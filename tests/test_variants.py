"""Each SinSim variant (the term x where it acts) trains on digits with a tiny
budget and records its geometry; the two terms differ exactly as their
formulas say on a collapsed batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

from sinsim_ext.losses import SinkhornLoss
from train.run import main


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors (see test_paper_grid.py)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("term", ["entropic", "divergence"])
@pytest.mark.parametrize("on", ["features", "projection"])
def test_each_variant_runs_and_records_its_geometry(tmp_path, term, on):
    out = tmp_path / f"{term}-{on}"
    code = main(["--dataset", "digits", "--method", "sinsim", "--sinkhorn-term", term, "--sinkhorn-on", on,
                 "--sinkhorn-weight", "1", "--epochs", "1", "--train-subset", "64", "--batch-size", "32",
                 "--image-size", "8", "--probe-epochs", "1", "--probe-train-subset", "200", "--probe-test-subset",
                 "100", "--geometry-points", "80", "--num-workers", "1", "--out", str(out)])
    assert code == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["sinkhorn_term"], config["sinkhorn_on"]) == (term, on)
    r = json.loads((out / "results.json").read_text())
    assert r["signature"]["sinkhorn_term"] == term
    g = r["geometry"]
    assert g["points"] == 80 and 0 <= g["alignment"] <= 4 and -8 <= g["uniformity"] <= 0
    assert 1 <= g["effective_rank"] <= 80 and -1 <= g["silhouette"] <= 1
    assert "sinkhorn" in (out / "metrics.csv").read_text().splitlines()[0]


def test_the_entropic_term_rewards_a_collapsed_batch_and_the_divergence_does_not():
    """docs/design/maths.md: for n spread points OT_eps(X, X) is about eps log n, and 0 for a batch
    collapsed to one point, so the entropic term is lowered by collapse; the divergence is 0 for both
    (the two views' batches coincide). Orthonormal points: every off-diagonal cost is 2, far above eps,
    so the optimal plan is the diagonal I/n: <P, C> = 0 and eps KL(I/n | 1/n^2) = eps log n."""
    eps, n = 0.05, 8
    spread = torch.eye(n, dtype=torch.float64)
    collapsed = torch.ones(n, n, dtype=torch.float64)
    entropic = SinkhornLoss(eps=eps, max_iter=200, backend="reference")
    divergence = SinkhornLoss(eps=eps, max_iter=200, debias=True, backend="reference")
    # the entropic value of the identity plan: <P, C> = 0 and eps KL(P | 1/n^2) = eps log n
    assert entropic(spread, spread).item() == pytest.approx(eps * torch.log(torch.tensor(float(n))).item(), rel=1e-3)
    assert entropic(collapsed, collapsed).item() == pytest.approx(0.0, abs=1e-9)
    assert divergence(spread, spread).item() == pytest.approx(0.0, abs=1e-9)
    assert divergence(collapsed, collapsed).item() == pytest.approx(0.0, abs=1e-9)


def test_a_common_offset_lowers_both_terms_when_the_two_views_differ():
    """On L2-normalised embeddings a large shared offset crowds both views into one spot of the sphere:
    the divergence of two different views falls towards 0 as well, not only the entropic cost. Neither term
    is immune to collapse; the trainer's centred geometry tells an offset from collapse."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 32, generator=gen, dtype=torch.float64)
    y = x + 0.5 * torch.randn(64, 32, generator=gen, dtype=torch.float64)
    offset = torch.zeros(32, dtype=torch.float64)
    offset[0] = 100.0
    for debias in (False, True):
        term = SinkhornLoss(eps=0.05, max_iter=500, debias=debias, backend="reference")
        assert term(x + offset, y + offset).item() < 0.02 * term(x, y).item()  # 0.42 -> 0.007; 0.21 -> 2e-5


def test_the_default_term_is_the_one_validation_chose():
    """docs, "the default term": entropic, chosen on validation linear accuracy paired by seed."""
    from train import METHOD_RECIPES, for_method, parse_config

    assert METHOD_RECIPES["sinsim"].defaults["sinkhorn_term"] == "entropic"
    assert for_method(parse_config([]), "sinsim").params["sinkhorn_term"] == "entropic"


def test_term_flags_parse(capsys):
    from train.config import parse_config

    assert parse_config(["--sinkhorn-term", "entropic"]).params["sinkhorn_term"] == "entropic"
    assert parse_config(["--sinkhorn-debias"]).params["sinkhorn_term"] == "divergence"  # the older flag's meaning
    with pytest.raises(SystemExit):
        parse_config(["--sinkhorn-term", "wasserstein"])
    assert "invalid choice: 'wasserstein'" in capsys.readouterr().err
