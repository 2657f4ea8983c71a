import pytest
import torch

from cancergpt_scvi.module import CancerGPTModule
from cancergpt_scvi.module._cancergpt import fisher_separation
from cancergpt_scvi.nn import DomainDiscriminator, TransformerEncoder, grad_reverse
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

    def encoder_grad(weight: float) -> torch.Tensor:
        module.zero_grad()
        module.grl.weight = weight
        torch.manual_seed(1)  # same masks both times
        inference = module.inference(x)
        z = inference["z"]
        logits = module.domain_discriminators["batch"](module.grl(z))
        torch.nn.functional.cross_entropy(logits, tensors["batch"].long().view(-1)).backward()
        return module.value_encoder.linear2.weight.grad.clone(), (
            module.domain_discriminators["batch"].net[0].weight.grad.clone()
        )

    enc_pos, disc_pos = encoder_grad(1.0)
    enc_neg, disc_neg = encoder_grad(-1.0)
    torch.testing.assert_close(enc_pos, -enc_neg)  # encoder gradient is reversed ...
    torch.testing.assert_close(disc_pos, disc_neg)  # ... the discriminator's is not


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
        first = conditioned.domain_discriminators[key].net[0]
        assert first.in_features == TINY["embed_dim"] + 5
        assert plain.domain_discriminators[key].net[0].in_features == TINY["embed_dim"]


def test_discriminators_judge_the_embedding_users_get():
    torch.manual_seed(0)
    module = CancerGPTModule(
        torch.arange(3, 53),
        53,
        n_domains={"technology": 2},
        adversarial_input="embedding",
        **{**TINY, "dropout": 0.0},
    )
    x = torch.poisson(torch.rand(12, 50) * 3)
    tensors = {"X": x, "technology": torch.randint(0, 2, (12, 1)).float()}
    module.train()
    inference = module.inference(x)
    # the embedding returned at inference, with gradients for the reversal
    assert inference["z_domain"].requires_grad
    module.eval()
    torch.testing.assert_close(inference["z_domain"].detach(), module.embed(x))
    # the masked training pass is a different input: its <cls> output is another vector
    assert not torch.allclose(inference["z"].detach(), module.embed(x), atol=1e-4)

    # the adversarial loss reaches the encoder through that embedding, not the masked pass
    module.train()
    out = module.loss(
        tensors, inference, {"expr_pred": torch.zeros_like(inference["tokens"].values)}
    )
    grad_z, grad_domain = torch.autograd.grad(
        out.loss, [inference["z"], inference["z_domain"]], allow_unused=True
    )
    assert grad_z is None
    assert grad_domain.abs().sum() > 0


def test_training_pass_discriminators_need_no_second_pass():
    module = CancerGPTModule(torch.arange(3, 43), 43, n_domains={"batch": 2}, **TINY)
    assert module.adversarial_input == "training"  # the default
    calls = []
    module.encoder.register_forward_hook(lambda *_: calls.append(1))
    inference = module.inference(torch.poisson(torch.rand(4, 40) * 3))
    assert len(calls) == 1  # one encoder pass: the discriminators judge its <cls> output
    torch.testing.assert_close(inference["cls_domain"], inference["token_out"][:, 0])
    torch.testing.assert_close(inference["z_domain"], inference["z"])
    with pytest.raises(ValueError, match="adversarial_input must be"):
        CancerGPTModule(torch.arange(3, 43), 43, adversarial_input="clean", **TINY)


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


def test_fisher_separation_reads_technology_means_within_tissue():
    torch.manual_seed(0)
    n, dim = 400, 6
    tissue = torch.randint(0, 2, (n,))
    tech = torch.randint(0, 2, (n,))
    z = torch.randn(n, dim)
    z[:, 0] += 3.0 * tissue  # tissue differences are not the technology's
    base = fisher_separation(z, tech, tissue, 2, 2)
    shifted = z.clone()
    shifted[:, 1] += 2.0 * tech  # a technology shift of 2 within-group s.d.
    # shares 1/2 each side of the tissue mean at distance 1 s.d.: separation ~ 1
    assert base < 0.1
    assert 0.8 < fisher_separation(shifted, tech, tissue, 2, 2) < 1.2
    # the same shift hidden in a direction of tiny spread is as visible
    small = z.clone()
    small[:, 2] = 0.01 * small[:, 2] + 0.02 * tech
    assert 0.8 < fisher_separation(small, tech, tissue, 2, 2) < 1.2


def _technology_module(**kwargs) -> CancerGPTModule:
    """A tiny module with a technology discriminator, reversal weight 1, in training mode."""
    torch.manual_seed(0)
    module = CancerGPTModule(
        torch.arange(3, 43), 43, n_domains={"technology": 2}, **{**TINY, "dropout": 0.0}, **kwargs
    )
    module.grl.weight = 1.0
    return module.train()


def test_discriminators_learn_from_remembered_cells():
    module = _technology_module(discriminator_memory=20)
    assert "memory_z" not in module.state_dict()  # a cache of training, not saved
    tensors = {"X": torch.poisson(torch.rand(8, 40) * 3), "technology": torch.ones(8, 1)}
    tensors["technology"][:4] = 0
    module(tensors)
    assert int(module.memory_count) == 8
    remembered = module.memory_z[:8].clone()
    assert not remembered.requires_grad
    _, _, second = module(tensors)
    assert int(module.memory_count) == 16
    # the loss holds the remembered cells' cross-entropy (~log 2) next to the minibatch's
    rest = second.loss - second.extra_metrics["adv_loss_technology"]
    assert (rest - second.reconstruction_loss_sum / 8).abs() > 0.3
    module(tensors)  # wraps around the ring of 20
    assert int(module.memory_count) == 24
    torch.testing.assert_close(module.memory_z[4:8], remembered[4:8])
    assert not torch.allclose(module.memory_z[:4], remembered[:4])
    with pytest.raises(ValueError, match="discriminator_memory"):
        CancerGPTModule(torch.arange(3, 43), 43, discriminator_memory=-1, **TINY)
    with pytest.raises(ValueError, match="needs a discriminator_memory of at least 4 x"):
        CancerGPTModule(
            torch.arange(3, 43), 43, n_domains={"technology": 2}, fisher_scale=1.0, **TINY
        )


def test_fisher_adversary_waits_for_a_full_memory_and_pulls_technologies_together():
    # a Fisher scale far above the discriminator's reversed gradient
    module = _technology_module(discriminator_memory=256, fisher_scale=100.0)
    tech = torch.arange(64).remainder(2).float().view(-1, 1)
    x = torch.poisson(torch.rand(64, 40) * 3) + 5 * tech  # technology 1 has more counts
    tensors = {"X": x, "technology": tech}
    _, _, first = module(tensors)
    assert "fisher_separation_technology" not in first.extra_metrics  # 64 cells, 32 dims
    module(tensors)
    inference, _, third = module(tensors)
    assert third.extra_metrics["fisher_separation_technology"] > 0
    # the encoder is pulled along the separation (no reversal of this term)
    z = inference["z_domain"]
    grad = torch.autograd.grad(third.loss, z)[0]
    step = z - 1e-3 * grad / grad.norm()
    # the pool of that step: the minibatch and the two remembered before it (the memory
    # keeps <cls> outputs, normalised when read)
    remembered = torch.nn.functional.normalize(module.memory_z[:128], dim=-1)
    pool = torch.cat([step, remembered])
    before = torch.cat([z, remembered])
    labels = torch.cat([tech.view(-1), module.memory_labels[:128, 0]]).long()
    assert fisher_separation(pool, labels, None, 2, 1) < fisher_separation(
        before, labels, None, 2, 1
    )


def test_covariate_offsets_shift_the_embedding_and_learn_only_from_the_adversary():
    module = _technology_module(embedding_offsets=["technology"])
    x = torch.poisson(torch.rand(8, 40) * 3)
    tech = torch.arange(8).remainder(2).float().view(-1, 1)
    module.eval()
    # zero-initialised: the same embedding whatever the label
    zero, one = (module.embed(x, domains={"technology": torch.full((8,), t)}) for t in (0, 1))
    torch.testing.assert_close(zero, one)
    with pytest.raises(ValueError, match="pass each cell's category codes"):
        module.embed(x)
    module.train()
    offsets = module.embedding_offsets["technology"].weight
    for weight, moved in ((0.0, False), (1.0, True)):
        module.zero_grad()
        module.grl.weight = weight
        _, _, out = module({"X": x, "technology": tech})
        out.loss.backward()
        # the decoders read the <cls> output without the offset: only the reversed
        # discriminator gradient reaches it
        assert (offsets.grad is not None and offsets.grad.abs().sum() > 0) == moved
    with torch.no_grad():
        torch.nn.init.normal_(offsets)
    module.eval()
    zero, one = (module.embed(x, domains={"technology": torch.full((8,), t)}) for t in (0, 1))
    assert (zero - one).abs().max() > 1e-2
    for name in ("tissue", "batch"):
        with pytest.raises(ValueError, match="only 'technology' can have offsets"):
            _technology_module(embedding_offsets=[name])


def test_adversaries_that_train_only_the_offsets_leave_the_encoder_alone():
    module = _technology_module(
        embedding_offsets=["technology"],
        adversary_trains="offsets",
        discriminator_memory=256,
        fisher_scale=100.0,
        fisher_ridge=1.0,
    )
    tech = torch.arange(64).remainder(2).float().view(-1, 1)
    x = torch.poisson(torch.rand(64, 40) * 3) + 5 * tech
    tensors = {"X": x, "technology": tech}
    offsets = module.embedding_offsets["technology"].weight

    def grads(weight: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradients of the encoder and the offsets with the memory in a fixed state."""
        count = module.memory_count.clone()
        module.zero_grad()
        module.grl.weight = weight
        torch.manual_seed(1)  # the same masking and gene draws for both weights
        _, _, out = module(tensors)
        out.loss.backward()
        module.memory_count.copy_(count)  # forget this minibatch again
        encoder = torch.cat([p.grad.flatten() for p in module.encoder.parameters()])
        return encoder, offsets.grad.clone() if offsets.grad is not None else torch.zeros(1)

    for _ in range(4):  # fill the memory: 256 cells, 4 x embed_dim
        module(tensors)
    # the memory keeps encoder outputs, before any offset
    torch.testing.assert_close(
        module.memory_z[:64].norm(dim=1),
        torch.full((64,), float(module.embed_dim) ** 0.5),
        rtol=0.05,
        atol=0.0,
    )
    with torch.no_grad():
        offsets[1] = torch.randn(module.embed_dim)  # technology 1 shifted away
    plain_encoder, no_push = grads(0.0)
    pushed_encoder, push = grads(1.0)
    assert no_push.abs().sum() == 0 and push.abs().sum() > 0
    # the expression objectives alone train the encoder, whatever the adversaries' weight
    torch.testing.assert_close(pushed_encoder, plain_encoder)
    # the separation of the remembered cells, with today's offsets, falls along it
    labels = module.memory_labels[:, 0]

    def separation() -> torch.Tensor:
        z = module._readout(module.memory_z, {"technology": labels})
        return fisher_separation(z, labels, None, 2, 1, ridge=1.0)

    before = separation()
    with torch.no_grad():
        offsets -= 0.1 * push / push.norm()
    assert separation() < before
    with pytest.raises(ValueError, match="needs embedding_offsets"):
        _technology_module(adversary_trains="offsets")
    with pytest.raises(ValueError, match="'encoder' or 'offsets'"):
        _technology_module(embedding_offsets=["technology"], adversary_trains="both")
