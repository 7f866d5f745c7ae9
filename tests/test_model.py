"""SiamMAE: parameter count, causal wiring of encoders and decoders, the loss's support, encode shapes, model-info CLI."""

import subprocess
import sys

import pytest
import torch

from study.config import ModelConfig
from study.model import SiamMAE, build_model
from study.model.pos_embed import sincos_2d


def small(**kw) -> SiamMAE:
    args = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, decoder_dim=32, decoder_depth=2,
                decoder_heads=2, mask_ratio=0.5)
    torch.manual_seed(0)
    return SiamMAE(**(args | kw)).eval()


def frames(seed=1, B=2, size=32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, 3, size, size, generator=g), torch.randn(B, 3, size, size, generator=g)


def run(model, f1, f2, seed=5):
    """forward with a fixed masking draw, so two calls differ only by their inputs."""
    torch.manual_seed(seed)
    with torch.no_grad():
        return model(f1, f2)


def visible_patch_pixels(mask_row, patch=8, grid=4):
    """(row slice, col slice) of the first visible patch of one sample."""
    idx = int((mask_row == 0).nonzero()[0])
    r, c = divmod(idx, grid)
    return slice(r * patch, (r + 1) * patch), slice(c * patch, (c + 1) * patch)


def test_vit_s16_encoder_has_timm_parameter_count():
    import timm

    model = build_model(ModelConfig())  # small preset, patch 16, 224
    ours = sum(p.numel() for p in model.encoder.parameters())
    theirs = sum(p.numel() for p in timm.create_model("vit_small_patch16_224", num_classes=0).parameters())
    assert ours == theirs == 21_665_664
    assert not model.encoder.pos_embed.requires_grad  # fixed sin-cos, counted as timm counts its pos_embed


@pytest.mark.parametrize("encoder,f1_depends_on_f2", [("siamese", False), ("joint", True)])
def test_f1_encoding_depends_on_f2_only_in_joint_encoder(encoder, f1_depends_on_f2):
    model = small(encoder=encoder)
    f1, f2 = frames()
    torch.manual_seed(5)
    latent1_a = model.forward_encoder(f1, f2)[0]
    torch.manual_seed(5)
    latent1_b = model.forward_encoder(f1, f2 + torch.randn_like(f2))[0]
    assert latent1_a.shape == (2, 17, 64)
    assert torch.allclose(latent1_a, latent1_b, atol=0) != f1_depends_on_f2


@pytest.mark.parametrize("decoder,depends", [("cross", False), ("cross-self", True), ("joint", True)])
def test_masked_query_depends_on_other_f2_tokens_unless_cross(decoder, depends):
    model = small(decoder=decoder)
    f1, f2 = frames()
    _, pred_a, mask = run(model, f1, f2)
    rows, cols = visible_patch_pixels(mask[0])
    f2_changed = f2.clone()
    f2_changed[0, :, rows, cols] += 3.0  # change one visible f2 patch of sample 0
    _, pred_b, mask_b = run(model, f1, f2_changed)
    assert torch.equal(mask, mask_b)
    masked = mask[0].bool()
    changed = (pred_a[0, masked] - pred_b[0, masked]).abs().max()
    assert (changed > 1e-4) == depends, f"{decoder}: masked predictions moved by {changed}"
    assert torch.allclose(pred_a[1], pred_b[1], atol=1e-6)  # the other sample is untouched


@pytest.mark.parametrize("decoder", ["cross", "cross-self", "joint"])
@pytest.mark.parametrize("encoder", ["siamese", "joint"])
def test_every_decoder_prediction_depends_on_f1(encoder, decoder):
    model = small(encoder=encoder, decoder=decoder)
    f1, f2 = frames()
    _, pred_a, mask = run(model, f1, f2)
    _, pred_b, _ = run(model, f1 + torch.randn_like(f1), f2)
    masked = mask.bool()
    assert (pred_a[masked] - pred_b[masked]).abs().min() > 0  # every masked place sees f1


@pytest.mark.parametrize("norm_pix", [True, False])
def test_loss_counts_masked_patches_only(norm_pix):
    model = small(norm_pix_loss=norm_pix)
    f1, f2 = frames()
    _, pred, mask = run(model, f1, f2)
    base = model.forward_loss(f2, pred, mask)
    visible = visible_patch_pixels(mask[0])
    masked_idx = int(mask[0].nonzero()[0])
    r, c = divmod(masked_idx, 4)
    target_visible, target_masked = f2.clone(), f2.clone()
    target_visible[0, :, visible[0], visible[1]] = torch.randn(3, 8, 8)
    target_masked[0, :, r * 8:(r + 1) * 8, c * 8:(c + 1) * 8] = torch.randn(3, 8, 8)
    assert model.forward_loss(target_visible, pred, mask) == base
    assert abs(model.forward_loss(target_masked, pred, mask) - base) > 1e-4


def test_loss_value_on_a_hand_made_case():
    model = small(norm_pix_loss=False)
    f2 = torch.full((1, 3, 32, 32), 2.0)
    mask = torch.zeros(1, 16)
    mask[0, [1, 5]] = 1
    pred = torch.zeros(1, 16, 192)
    pred[0, 5] = 1.0  # error 1 on patch 5, error 2 on patch 1: mean of 4 and 1
    assert model.forward_loss(f2, pred, mask).item() == pytest.approx(2.5)
    # norm_pix: a constant patch normalizes to 0, so predicting 0 there is perfect
    assert small(norm_pix_loss=True).forward_loss(f2, torch.zeros(1, 16, 192), mask).item() == 0.0


def test_norm_pix_loss_value_on_a_hand_made_case():
    """norm_pix: each patch's target is (x - the patch's mean) / the patch's std (unbiased, as MAE's .var()).
    Patch 1 holds 96 zeros and 96 twos: mean 1, variance 192/191, so its target is +-1 / sqrt(192/191 + 1e-6) and
    predicting 0 costs 1 / (192/191 + 1e-6) per value; patch 5 is constant 2: target 0, cost 0. The loss is the mean
    of the two masked patches."""
    model = small(norm_pix_loss=True)
    f2 = torch.full((1, 3, 32, 32), 2.0)
    f2[0, :, 0:8, 8:12] = 0.0  # patch 1 (row 0, col 1): its left half in every channel
    mask = torch.zeros(1, 16)
    mask[0, [1, 5]] = 1
    expected = (1 / (192 / 191 + 1e-6) + 0.0) / 2
    assert model.forward_loss(f2, torch.zeros(1, 16, 192), mask).item() == pytest.approx(expected, rel=1e-6)


def test_forward_shapes_and_backward():
    model = small().train()
    f1, f2 = frames()
    loss, pred, mask = model(f1, f2)
    assert pred.shape == (2, 16, 8 * 8 * 3) and mask.shape == (2, 16) and loss.ndim == 0
    loss.backward()
    assert model.encoder.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert model.encoder.pos_embed.grad is None and model.decoder_pos_embed.grad is None


def test_patchify_unpatchify_round_trip():
    model = small()
    imgs = torch.randn(2, 3, 32, 32)
    patches = model.patchify(imgs)
    assert patches.shape == (2, 16, 192)
    assert torch.equal(patches[0, 5].reshape(8, 8, 3), imgs[0, :, 8:16, 8:16].permute(1, 2, 0))  # patch (1, 1)
    assert torch.equal(model.unpatchify(patches), imgs)


@pytest.mark.parametrize("patch", [16, 8])
def test_encode_any_frame_size(patch):
    torch.manual_seed(0)
    model = SiamMAE(img_size=224, patch_size=patch, embed_dim=32, depth=1, num_heads=2, decoder_dim=32,
                    decoder_depth=1, decoder_heads=2).eval()
    with torch.no_grad():
        feats = model.encode(torch.randn(1, 3, 480, 832))
    assert feats.shape == (1, 480 // patch, 832 // patch, 32)
    assert torch.allclose(feats.mean(-1), torch.zeros(1), atol=1e-5)  # after the final LayerNorm (weight 1, bias 0)


def test_sincos_on_a_non_square_grid():
    emb = sincos_2d(16, (3, 5)).reshape(3, 5, 16)
    assert torch.equal(emb[0, :, :8], emb[2, :, :8])  # first half: column only
    assert torch.equal(emb[:, 1, 8:], emb[:, 4, 8:])  # second half: row only
    assert torch.equal(emb[0, 0], torch.tensor([0.0] * 4 + [1.0] * 4 + [0.0] * 4 + [1.0] * 4))
    assert torch.equal(sincos_2d(16, (3, 5), cls_token=True)[0], torch.zeros(16))


def _model_info(*args):
    return subprocess.run([sys.executable, "-m", "study.cli", "model-info", *args], capture_output=True, text=True)


def test_model_info_prints_todays_counts_and_flops_without_importing_torch():
    """model-info counts from the shapes (it used to build the model: 9-18 s of torch and timm imports)."""
    code = ("import sys; from study.cli import main; sys.argv = ['study', 'model-info']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('torch imported' if 'torch' in sys.modules else 'no torch')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "no torch" in res.stdout
    # ViT-S/16, cross-self 512/8/16, as measured on the built model before the analytic count
    for value in ("21,665,664", "34,333,952", "55,999,616", "176,512", "24,398,014,464", "73,194,043,392"):
        assert value in res.stdout


@pytest.mark.parametrize("overrides", [
    {}, {"model.decoder": "cross"}, {"model.decoder": "joint", "model.encoder": "joint"},
    {"model.preset": "mini", "model.patch_size": 8, "model.img_size": 64, "model.decoder_dim": 128,
     "model.decoder_depth": 2, "model.decoder_heads": 4},
    {"model.preset": "micro", "model.patch_size": 8, "model.img_size": 64, "model.decoder_dim": 32,
     "model.decoder_depth": 1, "model.decoder_heads": 2, "model.decoder": "joint"},
])
def test_analytic_parameter_counts_equal_the_built_model(overrides):
    from study.config import RunConfig, apply_overrides
    from study.model.flops import param_counts

    cfg = apply_overrides(RunConfig(), overrides).model
    with torch.device("meta"):
        model = build_model(cfg)
    enc = sum(p.numel() for p in model.encoder.parameters())
    fixed = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert param_counts(cfg) == {"encoder": enc, "decoder": sum(p.numel() for p in model.parameters()) - enc,
                                 "fixed": fixed}


def test_model_info_and_bench_model_default_to_the_recipe():
    import inspect

    from study import cli, cli_bench

    def default(p):  # typer options carry their default inside an OptionInfo
        return getattr(p.default, "default", p.default)

    recipe = ModelConfig()
    info = {k: default(p) for k, p in inspect.signature(cli.model_info).parameters.items()}
    assert info == {"preset": recipe.preset, "patch": recipe.patch_size, "img": recipe.img_size,
                    "encoder": recipe.encoder, "decoder": recipe.decoder, "decoder_dim": recipe.decoder_dim,
                    "decoder_depth": recipe.decoder_depth, "decoder_heads": recipe.decoder_heads,
                    "mask_ratio": recipe.mask_ratio}
    bench = {k: default(p) for k, p in inspect.signature(cli_bench.bench_model).parameters.items()}
    assert {k: bench[k] for k in ("preset", "patch", "img", "decoder")} == {
        "preset": recipe.preset, "patch": recipe.patch_size, "img": recipe.img_size, "decoder": recipe.decoder}


@pytest.mark.parametrize("args,named", [
    (["--patch", "15"], "model.patch_size"),
    (["--mask-ratio", "1.0"], "model.mask_ratio"),
    (["--decoder", "foo"], "model.decoder"),
    (["--decoder-heads", "7"], "model.decoder_heads"),
    (["--preset", "huge"], "model.preset"),
    (["--encoder", "twin"], "model.encoder"),
])
def test_model_info_bad_input_is_one_line_exit_2(args, named):
    res = _model_info(*args)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and "Traceback" not in res.stderr


def test_build_model_refuses_a_ratio_that_masks_nothing():
    from study.errors import UserError

    with pytest.raises(UserError, match="model.mask_ratio = 0.0 masks none"):
        build_model(ModelConfig(preset="micro", patch_size=8, img_size=32, mask_ratio=0.0))


def test_position_embedding_at_a_new_grid_interpolates_or_extends():
    from study.model.pos_embed import sincos_2d

    # sampling a grid's own embedding at its own cell centres gives it back exactly
    assert torch.allclose(sincos_2d(32, (6, 10), base_hw=(6, 10)), sincos_2d(32, (6, 10)), atol=1e-6)
    # a 2x finer grid: cell centres fall between the base positions, and stay inside the base range [-0.25, 3.25]
    fine = sincos_2d(32, (8, 8), base_hw=(4, 4))
    coarse = sincos_2d(32, (4, 4))
    assert not torch.allclose(fine[:16], coarse, atol=1e-3)
    model = SiamMAE(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, decoder_dim=32, decoder_depth=1,
                    decoder_heads=2)
    frames = torch.randn(1, 3, 64, 96)
    interp = model.encode(frames)
    model.encoder.pos_embed_mode = "extend"
    extend = model.encode(frames)
    assert interp.shape == extend.shape == (1, 8, 12, 32) and not torch.allclose(interp, extend)
    at_train_size = torch.randn(1, 3, 32, 32)
    a = model.encode(at_train_size)
    model.encoder.pos_embed_mode = "interpolate"
    assert torch.equal(a, model.encode(at_train_size))  # the training grid is untouched by either mode
