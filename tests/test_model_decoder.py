"""Decoder wiring: f1's decoder position embedding, and what the loss covers (loss_frames = f2 | both)."""

import pytest
import torch

from study.config import DECODERS
from study.model import SiamMAE


def model_at(**kw) -> SiamMAE:
    args = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, decoder_dim=32, decoder_depth=2,
                decoder_heads=2, mask_ratio=0.5)
    torch.manual_seed(0)
    return SiamMAE(**(args | kw)).eval()


def frames(B=2, size=32):
    g = torch.Generator().manual_seed(1)
    return torch.randn(B, 3, size, size, generator=g), torch.randn(B, 3, size, size, generator=g)


def forward(model, f1, f2, seed=5):
    """(loss, pred, mask) with a fixed masking draw."""
    model.mask_generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return model(f1, f2)


@pytest.mark.parametrize("decoder", DECODERS)
def test_decoder_pos_f1_changes_every_prediction(decoder):
    """With it, f1's memory tokens carry their places; without it they do not: the same weights and masks must give
    other predictions (a flag the decoder ignored would give equal ones)."""
    model = model_at(decoder=decoder)
    f1, f2 = frames()
    _, with_pos, mask_a = forward(model, f1, f2)
    model.decoder_pos_f1 = False
    _, without, mask_b = forward(model, f1, f2)
    assert torch.equal(mask_a, mask_b)
    assert (with_pos - without).abs().amax(-1).min() > 1e-5  # every place of every sample moved


@pytest.mark.parametrize("decoder", DECODERS)
def test_both_adds_f1_masked_patch_loss_under_symmetric_masking(decoder):
    model = model_at(decoder=decoder, mask_ratio_f1=0.5, loss_frames="both")
    f1, f2 = frames()
    loss, pred2, mask2 = forward(model, f1, f2)
    # the same draws by hand: encoder, decoder with f1 queries, per-frame losses
    model.mask_generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        latent1, mask1, ids1, latent2, mask2_, ids2 = model.forward_encoder(f1, f2)
        p2, p1 = model.forward_decoder(latent1, ids1, latent2, ids2, predict_f1=True)
    assert torch.equal(mask2, mask2_) and torch.equal(pred2, p2)
    assert p1.shape == pred2.shape == (2, 16, 8 * 8 * 3) and (mask1.sum(1) == 8).all()
    l1 = (model.patch_loss(f1, p1) * mask1).sum()
    l2 = (model.patch_loss(f2, p2) * mask2).sum()
    assert loss.item() == pytest.approx(((l1 + l2) / (mask1.sum() + mask2.sum())).item(), rel=1e-6)
    assert abs(loss.item() - model.forward_loss(f2, p2, mask2).item()) > 1e-4  # f1's term is really in it
    # the f2 reading, on the same masks: its loss is f2's masked patches alone
    f2_only = model_at(decoder=decoder, mask_ratio_f1=0.5, loss_frames="f2")
    loss_f2, pred_f2, _ = forward(f2_only, f1, f2)
    assert loss_f2.item() == pytest.approx(model.forward_loss(f2, pred_f2, mask2).item(), rel=1e-6)
    if decoder != "joint":  # a separate f1 pass: f2's predictions are the same in both readings
        assert torch.allclose(pred_f2, pred2, atol=1e-6)


@pytest.mark.parametrize("decoder", DECODERS)
def test_both_equals_f2_when_f1_is_unmasked(decoder):
    f1, f2 = frames()
    a = forward(model_at(decoder=decoder, loss_frames="f2"), f1, f2)
    b = forward(model_at(decoder=decoder, loss_frames="both"), f1, f2)
    assert not model_at(decoder=decoder, loss_frames="both").predicts_f1
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("decoder", DECODERS)
def test_masked_f1_memory_carries_its_patches_positions(decoder):
    """With f1 masked, its memory is an unordered set of (token, place) pairs: listing f1's kept tokens in another
    order, with ids_restore moved to match, must give the same predictions. Each kept token must get the decoder
    position of the patch it came from; a position read from the wrong index map moves with the order instead."""
    model = model_at(decoder=decoder, mask_ratio_f1=0.5)
    f1, f2 = frames()
    model.mask_generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        latent1, mask1, ids1, latent2, _, ids2 = model.forward_encoder(f1, f2)
        pred, _ = model.forward_decoder(latent1, ids1, latent2, ids2)
        n = latent1.shape[1] - 1
        assert n == 8 and (mask1.sum(1) == 8).all()
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))  # a new order of the kept tokens
        shuffle = ids1.argsort(1)
        shuffle = torch.cat([shuffle[:, :n][:, perm], shuffle[:, n:]], dim=1)
        latent1_reordered = torch.cat([latent1[:, :1], latent1[:, 1:][:, perm]], dim=1)
        pred_reordered, _ = model.forward_decoder(latent1_reordered, shuffle.argsort(1), latent2, ids2)
    assert torch.allclose(pred, pred_reordered, atol=1e-5)
