"""timm export parity, checkpoint loading (and refusing), FLOPs counted analytically vs FlopCounterMode."""

import pickle

import pytest
import timm
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from study.config import ModelConfig, RunConfig, apply_overrides
from study.errors import UserError
from study.model import SiamMAE, build_model, export_timm, load_encoder, safe_load, save_timm_export, timm_encoder
from study.model.flops import pair_flops
from study.model.timm_export import timm_model_name


def tiny(**kw) -> SiamMAE:
    torch.manual_seed(0)
    args = dict(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, decoder_dim=32, decoder_depth=2,
                decoder_heads=2)
    return SiamMAE(**(args | kw)).eval()


def _perturb(model):
    """Random non-zero LayerNorm/bias values, so parity is not helped by MAE's init (weights 1, biases 0)."""
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)


def test_custom_size_export_matches_timm_to_1e5():
    model = tiny()
    _perturb(model)
    vit = timm_encoder(model)
    vit.load_state_dict(export_timm(model), strict=True)
    vit.eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ours = model.encode(x)  # (B, h, w, D)
        theirs = vit.forward_features(x)[:, 1:]  # (B, 1 + L, D) -> patch tokens
    assert ours.shape == (3, 4, 4, 64)
    assert (ours.reshape(3, 16, 64) - theirs).abs().max() < 1e-5


def test_vit_s16_export_loads_strictly_into_the_registered_timm_model():
    model = build_model(ModelConfig()).eval()
    assert timm_model_name(model) == "vit_small_patch16_224"
    vit = timm.create_model("vit_small_patch16_224", num_classes=0).eval()
    vit.load_state_dict(export_timm(model), strict=True)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert (model.encode(x).reshape(1, 196, 384) - vit.forward_features(x)[:, 1:]).abs().max() < 1e-5


def test_timm_export_file_round_trip(tmp_path):
    model = tiny()
    _perturb(model)
    path = save_timm_export(model, tmp_path / "enc.pt")
    loaded = load_encoder(str(path))
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        assert torch.equal(loaded.encode(x), model.encode(x))
    assert loaded.patch_size == 8 and loaded.embed_dim == 64
    assert not list(tmp_path.glob("*.tmp"))


def _train_checkpoint(tmp_path, overrides):
    cfg = apply_overrides(RunConfig(), overrides)
    torch.manual_seed(0)
    model = build_model(cfg.model)
    path = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "config": cfg.to_dict(), "step": 3}, path)
    return model, path


SMOKE = {"model.preset": "micro", "model.patch_size": 8, "model.img_size": 32, "model.decoder_dim": 32,
         "model.decoder_depth": 1, "model.decoder_heads": 2, "model.mask_ratio": 0.75}


def test_train_checkpoint_loads(tmp_path):
    model, path = _train_checkpoint(tmp_path, SMOKE)
    loaded = load_encoder(str(path))
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        assert torch.equal(loaded.encode(x), model.eval().encode(x))


def test_random_spec_is_seeded():
    cfg = apply_overrides(RunConfig(), SMOKE).model
    a, b, c = load_encoder("random", cfg, seed=1), load_encoder("random", cfg, seed=1), load_encoder("random", cfg, seed=2)
    assert torch.equal(a.encoder.cls_token, b.encoder.cls_token)
    assert not torch.equal(a.encoder.cls_token, c.encoder.cls_token)


def test_shape_mismatch_names_the_first_key(tmp_path):
    _, path = _train_checkpoint(tmp_path, SMOKE)
    payload = torch.load(path, weights_only=True)
    payload["config"]["model"]["decoder_dim"] = 64  # the weights no longer fit the config
    payload["config"]["model"]["decoder_heads"] = 2
    torch.save(payload, path)
    with pytest.raises(UserError, match=r"ckpt.pt: key mask_token has shape \(1, 1, 32\) in the checkpoint but \(1, 1, 64\)"):
        load_encoder(str(path))


class _Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.target}",)


def test_safe_load_refuses_a_pickled_callable_and_runs_nothing(tmp_path):
    pwned = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": _Exploit(pwned)}, path)
    assert not pwned.exists()
    with pytest.raises(UserError, match=r"evil.pt: refused: not a plain tensor checkpoint"):
        safe_load(path)
    with pytest.raises(UserError, match="refused"):
        load_encoder(str(path))
    assert not pwned.exists()
    # the same bytes through plain pickle would have run the command: the test's exploit is real
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(_Exploit(pwned)))
    pickle.loads(raw.read_bytes())
    assert pwned.exists()


def test_safe_load_refuses_garbage(tmp_path):
    path = tmp_path / "junk.pt"
    good = tmp_path / "good.pt"
    torch.save({"w": torch.zeros(1000)}, good)
    for junk in (b"not a checkpoint at all", b"", good.read_bytes()[:500], b"PK\x03\x04 a broken zip"):
        path.write_bytes(junk)
        with pytest.raises(UserError, match="junk.pt: refused"):
            safe_load(path)
    with pytest.raises(UserError, match="no such checkpoint"):
        safe_load(tmp_path / "missing.pt")


def test_safe_load_lets_a_bug_keep_its_traceback(tmp_path, monkeypatch):
    """Only an unreadable file is a user error; anything else (a bug, memory) propagates as itself."""
    path = tmp_path / "ok.pt"
    torch.save({"w": torch.zeros(1)}, path)

    def broken(*args, **kwargs):
        raise TypeError("a bug inside the loader")

    monkeypatch.setattr(torch, "load", broken)
    with pytest.raises(TypeError, match="a bug inside the loader"):
        safe_load(path)


def _counted(model, f1, f2, backward):
    """FlopCounterMode per-op totals; the CPU SDPA kernel counts 0 in torch 2.14, so its formula goes in custom_mapping."""
    aten = torch.ops.aten
    mapping = {
        aten._scaled_dot_product_flash_attention_for_cpu: lambda q, k, v, *a, **kw: sdpa_flop_count(q, k, v),
        aten._scaled_dot_product_flash_attention_for_cpu_backward:
            lambda g, q, k, v, *a, **kw: sdpa_backward_flop_count(g, q, k, v),
    }
    torch.manual_seed(0)
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        loss, _, _ = model(f1, f2)
        if backward:
            loss.backward()
    return {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}


@pytest.mark.parametrize("encoder,decoder,ratio_f1", [("siamese", "cross-self", 0.0), ("siamese", "cross", 0.0),
                                                      ("joint", "joint", 0.0), ("siamese", "cross-self", 0.5),
                                                      ("joint", "cross", 0.25)])
def test_analytic_flops_equal_flop_counter(encoder, decoder, ratio_f1):
    model = tiny(encoder=encoder, decoder=decoder, mask_ratio=0.75, mask_ratio_f1=ratio_f1, img_size=64)
    f1, f2 = torch.randn(2, 1, 3, 64, 64)
    analytic = pair_flops(model)
    forward = _counted(model, f1, f2, backward=False)
    assert sum(forward.values()) == analytic["forward"]
    # backward: the analytic count is the usual 2x forward. The counter differs in two known ways: the frames need no
    # gradient (no input gradient of the patch projection: -1x its forward), and its flash-attention backward formula
    # recomputes QK^T (2.5x the attention forward, not 2x).
    both = _counted(model.train(), f1, f2, backward=True)
    conv, attn = forward["aten.convolution"], forward["aten._scaled_dot_product_flash_attention_for_cpu"]
    assert conv == 2 * (2 * 64 * (3 * 8 * 8) * 64)  # both frames' patch embedding: 64 patches, 192 -> 64
    assert sum(both.values()) == analytic["forward_backward"] - conv + attn // 2


def test_flops_from_config_match_model():
    cfg = ModelConfig()
    assert pair_flops(cfg) == pair_flops(build_model(cfg))
    assert 70e9 < pair_flops(cfg)["forward_backward"] < 76e9  # about 73 GFLOP per ViT-S/16 pair (fwd+bwd)
