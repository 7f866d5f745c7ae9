"""Masking: exact keep counts, per-sample and seeded randomness, each strategy's placement, asymmetric default, tube."""

import pytest
import torch

from study.config import MASK_STRATEGIES
from study.model import SiamMAE, random_masking
from study.model.masking import block_shapes


def _tokens(B=4, L=196, D=8):
    return torch.arange(B * L * D, dtype=torch.float32).reshape(B, L, D)


@pytest.mark.parametrize("strategy", MASK_STRATEGIES)
@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.75, 0.9, 0.95])
def test_keeps_exactly_int_L_times_one_minus_r(strategy, ratio):
    x = _tokens()
    kept, mask, ids_restore = random_masking(x, ratio, strategy, (14, 14))
    n_keep = int(196 * (1 - ratio))
    assert kept.shape == (4, n_keep, 8)
    assert mask.shape == (4, 196) and set(mask.unique().tolist()) <= {0.0, 1.0}
    assert (mask.sum(1) == 196 - n_keep).all()
    # ids_restore is a permutation, and the kept tokens are exactly the unmasked ones, in shuffled order
    assert (ids_restore.sort(1).values == torch.arange(196)).all()
    ids_keep = ids_restore.argsort(1)[:, :n_keep]
    assert torch.equal(kept, torch.gather(x, 1, ids_keep[..., None].expand(-1, -1, 8)))
    assert (mask.gather(1, ids_keep) == 0).all()


def test_ratio_zero_keeps_order():
    x = _tokens()
    kept, mask, ids_restore = random_masking(x, 0.0)
    assert torch.equal(kept, x) and mask.sum() == 0 and (ids_restore == torch.arange(196)).all()


@pytest.mark.parametrize("strategy", MASK_STRATEGIES)
def test_samples_differ_and_seed_reproduces(strategy):
    x = _tokens(B=8)
    torch.manual_seed(3)
    _, m1, _ = random_masking(x, 0.75, strategy, (14, 14))
    torch.manual_seed(3)
    _, m2, _ = random_masking(x, 0.75, strategy, (14, 14))
    torch.manual_seed(4)
    _, m3, _ = random_masking(x, 0.75, strategy, (14, 14))
    assert torch.equal(m1, m2)
    assert not torch.equal(m1, m3)
    assert len({tuple(row.tolist()) for row in m1}) > 1  # samples in one batch get different masks


def _connected(cells: set[tuple[int, int]]) -> bool:
    """4-connectivity by flood fill."""
    todo, seen = [next(iter(cells))], set()
    while todo:
        r, c = todo.pop()
        if (r, c) in seen:
            continue
        seen.add((r, c))
        todo += [n for n in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)) if n in cells]
    return seen == cells


def _visible_cells(mask_row: torch.Tensor, w: int) -> set[tuple[int, int]]:
    return {divmod(int(i), w) for i in (mask_row == 0).nonzero().flatten()}


def test_block_placement_is_random_per_sample_and_covers_the_grid():
    """At 0.95 on 14x14 the old block masking kept patches 187-195 in every sample; now the 9 visible patches form one
    contiguous block at a random place. (Per sample a border patch is visible with probability >= ~3%, so a generator
    seed may leave one of the 196 unseen in 200 samples about 7% of the time: the test fixes the generator.)"""
    _, mask, _ = random_masking(_tokens(B=200), 0.95, "block", (14, 14), generator=torch.Generator().manual_seed(0))
    visible = mask == 0
    assert (visible.sum(1) == 9).all()
    assert visible.any(0).all()  # every patch index is visible in at least one sample
    assert all(_connected(_visible_cells(m, 14)) for m in mask)  # each sample's visible set is 4-connected
    assert len({tuple(m.tolist()) for m in mask}) > 100  # placements differ between samples


@pytest.mark.parametrize("grid_hw", [(14, 14), (6, 10)])
def test_block_is_a_rectangle_with_one_partial_edge_row_at_every_count(grid_hw):
    h, w = grid_hw
    L = h * w
    g = torch.Generator().manual_seed(1)
    for n_keep in range(1, L):
        assert block_shapes(h, w, n_keep)
        ratio = 1 - (n_keep + 0.5) / L  # keep_count(L, ratio) == n_keep
        _, mask, _ = random_masking(_tokens(B=4, L=L), ratio, "block", grid_hw, generator=g)
        for m in mask:
            cells = _visible_cells(m, w)
            assert len(cells) == n_keep and _connected(cells)
            rows = sorted({r for r, _ in cells})
            cols = sorted({c for _, c in cells})
            box = m.reshape(h, w)[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] == 0
            partial = [i for i, row in enumerate(box) if not row.all()]
            assert len(partial) <= 1 and set(partial) <= {0, box.shape[0] - 1}  # one partial row, first or last
            if partial:  # flush left or right
                row = box[partial[0]].tolist()
                assert row == sorted(row) or row == sorted(row, reverse=True)


def test_grid_keeps_a_lattice():
    torch.manual_seed(0)
    _, mask, _ = random_masking(_tokens(B=16), 0.75, "grid", (14, 14))  # 49 kept: stride 2, every offset fits exactly
    for m in mask.reshape(16, 14, 14):
        r, c = (m == 0).nonzero().T
        assert r.numel() == 49
        assert len(set((r % 2).tolist())) == 1 and len(set((c % 2).tolist())) == 1
    offsets = {tuple(((m == 0).nonzero()[0] % 2).tolist()) for m in mask.reshape(16, 14, 14)}
    assert len(offsets) > 1  # the lattice offset is random


def test_asymmetric_default_leaves_f1_unmasked():
    model = SiamMAE(img_size=64, patch_size=8, embed_dim=64, depth=1, num_heads=2, decoder_dim=32, decoder_depth=1,
                    decoder_heads=2)
    f1, f2 = torch.randn(2, 2, 3, 64, 64)
    latent1, mask1, _, latent2, mask2, _ = model.forward_encoder(f1, f2)
    assert mask1.sum() == 0 and latent1.shape == (2, 1 + 64, 64)
    assert (mask2.sum(1) == 64 - 3).all() and latent2.shape == (2, 1 + 3, 64)  # [CLS] + int(64 x 0.05) visible


def test_tube_masks_both_frames_at_the_same_places_and_needs_equal_ratios():
    model = SiamMAE(img_size=64, patch_size=8, embed_dim=64, depth=1, num_heads=2, decoder_dim=32, decoder_depth=1,
                    decoder_heads=2, mask_ratio=0.75, mask_ratio_f1=0.75, mask_strategy="tube")
    model.mask_generator = torch.Generator().manual_seed(0)
    f1, f2 = torch.randn(2, 8, 3, 64, 64)
    _, mask1, ids1, _, mask2, ids2 = model.forward_encoder(f1, f2)
    assert torch.equal(mask1, mask2) and torch.equal(ids1, ids2) and (mask2.sum(1) == 48).all()
    assert len({tuple(m.tolist()) for m in mask2}) == 8  # a new tube per sample
    model.mask_strategy = "random"  # the same draws frame by frame: the two frames' masks no longer agree
    model.mask_generator = torch.Generator().manual_seed(0)
    _, mask1, _, _, mask2, _ = model.forward_encoder(f1, f2)
    assert not torch.equal(mask1, mask2)
    with pytest.raises(ValueError, match="mask_ratio_f1"):
        SiamMAE(img_size=64, patch_size=8, embed_dim=64, depth=1, num_heads=2, decoder_dim=32, decoder_depth=1,
                decoder_heads=2, mask_ratio=0.9, mask_ratio_f1=0.5, mask_strategy="tube")


def test_masking_draws_from_the_model_generator_only():
    model = SiamMAE(img_size=64, patch_size=8, embed_dim=64, depth=1, num_heads=2, decoder_dim=32, decoder_depth=1,
                    decoder_heads=2, mask_ratio=0.5)
    f1, f2 = torch.randn(2, 2, 3, 64, 64)
    masks = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        model.mask_generator = torch.Generator().manual_seed(5)
        masks.append(model.forward_encoder(f1, f2)[4])
    assert torch.equal(*masks)  # the global RNG does not move the masks


def test_bad_ratio_and_strategy_are_refused():
    with pytest.raises(ValueError, match="mask_ratio"):
        random_masking(_tokens(), 1.0)
    with pytest.raises(ValueError, match="spiral"):
        random_masking(_tokens(), 0.5, "spiral")


# Outputs of `random` and `grid` for a fixed generator, recorded before block masking was redesigned and tube added:
# those two strategies must not change (kept patch indices per sample, and the first ids_restore entries of sample 0).
PINNED = {
    ("random", 0.75): ([[1, 4, 6, 13, 17, 19, 29, 37, 39, 41, 42, 49, 50, 54, 56, 63],
                        [2, 17, 26, 27, 30, 31, 32, 36, 37, 38, 41, 44, 51, 54, 62, 63]], [31, 8, 42, 41, 12, 23]),
    ("random", 0.9): ([[17, 19, 49, 50, 54, 63], [17, 30, 36, 37, 51, 62]], [31, 8, 42, 41, 12, 23]),
    ("grid", 0.75): ([[8, 10, 12, 14, 24, 26, 28, 30, 40, 42, 44, 46, 56, 58, 60, 62]] * 2, [26, 36, 24, 49, 32, 56]),
    ("grid", 0.9): ([[8, 42, 46, 56, 60, 62], [14, 26, 28, 40, 58, 62]], [26, 36, 24, 49, 32, 56]),
}


@pytest.mark.parametrize("strategy, ratio", list(PINNED))
def test_random_and_grid_are_unchanged_for_a_fixed_generator(strategy, ratio):
    kept, restore = PINNED[(strategy, ratio)]
    _, mask, ids_restore = random_masking(torch.zeros(2, 64, 4), ratio, strategy, (8, 8),
                                          generator=torch.Generator().manual_seed(7))
    assert [(row == 0).nonzero().flatten().tolist() for row in mask] == kept
    assert ids_restore[0, :6].tolist() == restore
