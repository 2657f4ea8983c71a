import pytest
import torch

from cancergpt_scvi.module import CancerGPTModule
from cancergpt_scvi.nn import DomainDiscriminator, TransformerEncoder
from cancergpt_scvi.nn._gradient_reversal import grad_reverse
from tests.conftest import TINY


def test_gradient_reversal_flips_the_discriminator_gradient():
    x = torch.randn(5, 4, requires_grad=True)
    w = torch.randn(4)
    (x * w).sum().backward()
    plain = x.grad.clone()
    x.grad = None
    (grad_reverse(x, 0.5) * w).sum().backward()
    torch.testing.assert_close(x.grad, -0.5 * plain)


def test_encoder_reversal_pushes_against_the_discriminator():
    torch.manual_seed(0)
    module = CancerGPTModule(
        torch.arange(3, 53), 53, n_domains={"batch": 3}, **{**TINY, "dropout": 0.0}
    )
    x = torch.poisson(torch.rand(16, 50) * 3)
    tensors = {"X": x, "batch": torch.randint(0, 3, (16, 1)).float()}

    def gradients(weight: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        module.zero_grad()
        torch.manual_seed(1)  # same masks both times
        z = module.inference(x)["z"]
        loss, _ = module.adversary(z, {"batch": tensors["batch"]}, weight=weight)
        loss.backward()
        return (
            loss.detach(),
            module.value_encoder.linear2.weight.grad.clone(),
            module.adversary.discriminators["batch"].net[0].weight.grad.clone(),
        )

    loss_pos, enc_pos, disc_pos = gradients(1.0)
    loss_neg, enc_neg, disc_neg = gradients(-1.0)
    torch.testing.assert_close(loss_pos, loss_neg)  # the weight changes no loss value ...
    torch.testing.assert_close(enc_pos, -enc_neg)  # ... the encoder gradient is reversed ...
    torch.testing.assert_close(disc_pos, disc_neg)  # ... the discriminator's is not


def test_loss_takes_the_reversal_weight_and_writes_no_state():
    torch.manual_seed(0)
    module = CancerGPTModule(
        torch.arange(3, 43), 43, n_domains={"technology": 2}, **{**TINY, "dropout": 0.0}
    ).train()
    x = torch.poisson(torch.rand(12, 40) * 3)
    tensors = {"X": x, "technology": torch.randint(0, 2, (12, 1)).float()}
    before = {k: v.clone() for k, v in module.state_dict().items()}

    def encoder_grad(weight: float) -> torch.Tensor:
        module.zero_grad()
        torch.manual_seed(1)
        _, _, losses = module.forward(
            tensors, loss_kwargs={"adversarial_weight": weight, "mvc_weight": 0.0}
        )
        # the reconstruction part alone, to isolate the adversary's gradient below
        recon = losses.reconstruction_loss["reconstruction_loss"].mean()
        losses.loss.backward()
        grad = module.value_encoder.linear2.weight.grad.clone()
        module.zero_grad()
        torch.manual_seed(1)
        _, _, again = module.forward(tensors, loss_kwargs={"mvc_weight": 0.0})
        again.reconstruction_loss["reconstruction_loss"].mean().backward()
        torch.testing.assert_close(recon, again.reconstruction_loss["reconstruction_loss"].mean())
        return grad - module.value_encoder.linear2.weight.grad

    push = encoder_grad(2.0)
    assert push.abs().sum() > 0
    torch.testing.assert_close(encoder_grad(-2.0), -push)
    torch.testing.assert_close(encoder_grad(0.0), torch.zeros_like(push))
    after = module.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():
        torch.testing.assert_close(after[key], value, msg=key)  # no step taken, nothing cached


def test_transformer_matches_torch_encoder_layer():
    torch.manual_seed(0)
    ours = TransformerEncoder(32, 2, 4, 64, dropout=0.0).eval()
    reference = torch.nn.TransformerEncoder(
        torch.nn.TransformerEncoderLayer(32, 4, 64, 0.0, batch_first=True),
        2,
        enable_nested_tensor=False,
    ).eval()
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(4, 12, 32)
    pad = torch.zeros(4, 12, dtype=torch.bool)
    pad[:, 9:] = True
    with torch.no_grad():
        torch.testing.assert_close(
            ours(x, pad)[~pad], reference(x, src_key_padding_mask=pad)[~pad], atol=1e-5, rtol=1e-5
        )


def test_loss_reports_each_objective():
    module = CancerGPTModule(
        torch.arange(3, 43), 43, n_domains={"batch": 2, "technology": 2}, **TINY
    )
    x = torch.poisson(torch.rand(8, 40) * 3)
    tensors = {"X": x, "batch": torch.zeros(8, 1), "technology": torch.ones(8, 1)}
    _, _, loss = module(tensors)
    assert set(loss.extra_metrics) >= {
        "mlm_loss",
        "mvc_loss",
        "adv_loss_batch",
        "adv_loss_technology",
        "disc_acc_batch",
    }
    assert torch.isfinite(loss.loss)


def test_discriminator_reads_a_domain_hidden_in_a_small_spread():
    """<cls> embeddings share a large common direction; the domain is in the small rest."""
    torch.manual_seed(0)
    n, dim = 256, 32
    common = torch.nn.functional.normalize(torch.randn(dim), dim=0)
    domain = torch.randint(0, 2, (n,))
    direction = torch.nn.functional.normalize(torch.randn(dim), dim=0)
    spread = 1e-3 * ((2 * domain - 1)[:, None] * direction + 0.5 * torch.randn(n, dim))
    z = torch.nn.functional.normalize(common + spread, dim=1)

    disc = DomainDiscriminator(dim, 2)
    optimizer = torch.optim.Adam(disc.parameters(), lr=1e-3)
    for _ in range(150):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(disc(z), domain).backward()
        optimizer.step()
    disc.eval()
    with torch.no_grad():
        accuracy = (disc(z).argmax(-1) == domain).float().mean().item()
    assert accuracy > 0.9
    disc.train()
    assert disc(z[:1]).shape == (1, 2)  # a minibatch of one cell does not break training


def test_conditioned_discriminator_reads_the_domain_only_beyond_the_condition():
    """Patients nested in tissues: told the tissue, the discriminator needs the rest of z."""
    torch.manual_seed(0)
    n, dim, n_tissues = 240, 16, 4
    tissue = torch.arange(n) % n_tissues
    patient = tissue * 2 + (torch.arange(n) // n_tissues) % 2  # two patients per tissue
    z = torch.randn(n, dim)  # carries nothing about the patient
    disc = DomainDiscriminator(dim, 2 * n_tissues, n_conditions=n_tissues)
    optimizer = torch.optim.Adam(disc.parameters(), lr=1e-2)
    for _ in range(200):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(disc(z, tissue), patient).backward()
        optimizer.step()
    with torch.no_grad():
        predicted = disc(z, tissue).argmax(-1)
    # the tissue narrows each cell down to its tissue's two patients, never to a wrong tissue
    assert torch.equal(predicted // 2, tissue)
    with pytest.raises(ValueError, match="pass the condition codes"):
        disc(z)


def test_module_conditions_its_discriminators_on_tissue_when_registered():
    ids = torch.arange(3, 53)
    kwargs = {**TINY, "n_domains": {"batch": 3, "technology": 2}}
    conditioned = CancerGPTModule(ids, 53, n_conditions=5, **kwargs)
    plain = CancerGPTModule(ids, 53, n_conditions=1, **kwargs)
    for key in ("batch", "technology"):
        first = conditioned.adversary.discriminators[key].net[0]
        assert first.in_features == TINY["embed_dim"] + 5
        assert plain.adversary.discriminators[key].net[0].in_features == TINY["embed_dim"]


def test_decoders_are_told_the_domain_and_the_embedding_is_not():
    torch.manual_seed(0)
    module = CancerGPTModule(
        torch.arange(3, 43), 43, n_domains={"technology": 2}, **{**TINY, "dropout": 0.0}
    ).eval()
    x = torch.poisson(torch.rand(4, 40) * 3)
    inference = module.inference(x)
    args = {"token_out": inference["token_out"], "tokens": inference["tokens"]}
    tech0 = {"technology": torch.zeros(4, 1)}
    tech1 = {"technology": torch.ones(4, 1)}
    # zero-initialised: training starts from the unconditioned decoders
    same = module.generative(**args, domains=tech1)["mvc_pred"]
    torch.testing.assert_close(module.generative(**args, domains=tech0)["mvc_pred"], same)
    torch.nn.init.normal_(module.decoder_domains["technology"].weight)
    for output in ("expr_pred", "mvc_pred"):
        zero = module.generative(**args, domains=tech0)[output]
        one = module.generative(**args, domains=tech1)[output]
        assert (zero - one).abs().max() > 1e-3, output
    with pytest.raises(ValueError, match="conditioned on"):
        module.generative(**args)
    assert module.embed(x).shape == (4, TINY["embed_dim"])  # no domain labels needed
    plain = CancerGPTModule(
        torch.arange(3, 43), 43, n_domains={"technology": 2}, condition_decoders=False, **TINY
    )
    assert len(plain.decoder_domains) == 0


@pytest.mark.parametrize("padded", [False, True])
def test_cls_only_last_layer_equals_the_full_encoder(padded):
    """The readout's saving (position 0 only in the last layer) changes no value."""
    torch.manual_seed(0)
    encoder = TransformerEncoder(32, n_layers=3, n_heads=4, ffn_dim=48, dropout=0.1).eval()
    for layer in encoder.layers:  # LayerNorms off 1 / 0 so that they matter
        torch.nn.init.normal_(layer.norm1.weight, 1.0, 0.3)
        torch.nn.init.normal_(layer.norm2.bias, 0.0, 0.3)
    x = torch.randn(5, 20, 32)
    mask = torch.zeros(5, 20, dtype=torch.bool)
    if padded:
        mask[1, 12:] = True
        mask[3, 5:] = True
    with torch.no_grad():
        full = encoder(x, mask)
        first = encoder(x, mask, first_only=True)
    assert first.shape == (5, 1, 32)
    torch.testing.assert_close(first, full[:, :1], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(full[:, :1], full[:, 1:2])  # position 0 is not the others
