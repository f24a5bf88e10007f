import pytest
import torch

from simqos.models import build_model
from simqos.nested import TrainConfig, enumerate_routes, level_mask, route_accuracies, train_nested
from simqos.models.spec import IGNORE
from simqos.nested.training import _distilled, _forward

TINY = {"hidden": 32, "depth": 2}
FAST = dict(epochs_dense=10, epochs_sparsest=10, epochs_grow=5)


def _train(growth="sparse-first", densities=(0.6, 0.4, 0.25), snapshot=None):
    spec = build_model("mlp", **TINY)
    return spec, train_nested(spec, densities, TrainConfig(growth=growth, **FAST), on_epoch=snapshot)


@pytest.mark.parametrize("extra", [{}, {"weight_decay": 1e-2, "clip_grad_norm": 0.5}, {"distill": 0.5}],
                         ids=["plain", "decay-and-clipping", "distilled"])
def test_growth_never_moves_the_sparsest_level(extra):
    """Biases, norms and every weight of level K-1 are frozen once the sparsest phase ends,
    also with weight decay and clipping (Adam's own decay would move the frozen weights)."""
    spec = build_model("mlp", **TINY)
    captured = {}

    def snapshot(phase, epoch, loss):
        if phase == "sparsest" and epoch == FAST["epochs_sparsest"] - 1:
            captured.update({k: v.detach().clone() for k, v in spec.module.named_parameters()})

    net = train_nested(spec, (0.6, 0.4, 0.25), TrainConfig(**FAST, **extra), on_epoch=snapshot)
    params = dict(net.module.named_parameters())
    for name, before in captured.items():
        if name in net.ranks:
            sparsest = level_mask(net.ranks[name], 2)
            assert torch.equal(params[name][sparsest], before[sparsest]), name
        else:
            assert torch.equal(params[name], before), f"shared parameter {name} moved during growth"


def test_the_distilled_loss_by_hand():
    """Student logits (0, 0) against teacher logits (0, 2 ln 3), temperature 2: softened, the
    teacher says (1/4, 3/4) and the student (1/2, 1/2), a KL divergence of 1/4 ln(1/2) + 3/4
    ln(3/2) = 0.13081, times T² = 4; the label's cross-entropy is ln 2. An unscored output
    (IGNORE) counts in neither."""
    student, teacher = torch.zeros(2, 2), torch.tensor([[0.0, 2 * torch.log(torch.tensor(3.0))], [5.0, -5.0]])
    y = torch.tensor([1, IGNORE])
    kl = 0.25 * torch.log(torch.tensor(0.5)) + 0.75 * torch.log(torch.tensor(1.5))
    ce = torch.log(torch.tensor(2.0))
    assert torch.isclose(_distilled(student, y, teacher, 0.5), 0.5 * ce + 0.5 * 4 * kl)
    assert torch.isclose(_distilled(student, y, teacher, 1.0), 4 * kl)
    assert torch.isclose(_distilled(student, y, None, 0.5), ce)
    assert torch.isclose(_distilled(teacher[:1], y[:1], teacher[:1], 0.5), 0.5 * _distilled(teacher[:1], y[:1], None, 0.0))


def test_distillation_changes_the_sparse_phases_only():
    spec = build_model("mlp", **TINY)
    plain = train_nested(spec, (0.6, 0.25), TrainConfig(**FAST))
    spec = build_model("mlp", **TINY)
    distilled = train_nested(spec, (0.6, 0.25), TrainConfig(**FAST, distill=0.5))
    assert plain.dense_accuracy == distilled.dense_accuracy  # the same dense phase: the teacher
    x = torch.randn(5, 64)
    assert not torch.equal(plain.forward(x, plain.uniform_route(1)), distilled.forward(x, distilled.uniform_route(1)))


def test_every_level_is_trained_and_nested():
    spec, net = _train()
    assert [round(net.kept_fraction(k), 2) for k in range(3)] == [0.6, 0.4, 0.25]
    routes, complete = enumerate_routes(net.n_segments, net.n_levels)
    assert complete and len(routes) == 27
    accs = route_accuracies(net, spec.dataset, [net.uniform_route(k) for k in range(3)])
    assert all(a.accuracy > 0.5 for a in accs), [a.accuracy for a in accs]  # 10 classes: chance is 0.1


def test_training_is_deterministic():
    _, a = _train("route-aware")
    _, b = _train("route-aware")
    for name, p in a.module.state_dict().items():
        assert torch.equal(p, b.module.state_dict()[name]), name
    assert all(torch.equal(a.ranks[k], b.ranks[k]) for k in a.ranks)


def test_route_aware_differs_from_sparse_first_only_in_growth():
    _, sf = _train("sparse-first")
    _, ra = _train("route-aware")
    # same dense and sparsest phases: the sparsest level is identical
    x = torch.randn(5, 64)
    route = sf.uniform_route(2)
    assert torch.equal(sf.forward(x, route), ra.forward(x, route))
    assert not torch.equal(sf.forward(x, sf.uniform_route(0)), ra.forward(x, ra.uniform_route(0)))


def test_forward_helper_matches_network_forward():
    spec, net = _train(densities=(0.5, 0.1))
    x = spec.dataset.x_test[:7]
    for route in [(0, 0, 0), (0, 1, 1), (1, 0, 1)]:
        assert torch.equal(_forward(net.module, net.layers, net.ranks, route, x), net.forward(x, route))


def test_norm_layers_are_shared_and_frozen_during_growth():
    """A BatchNorm's affine parameters stop moving after the sparsest phase, and the sparsest
    level keeps the running statistics that phase left (the less sparse levels get their own)."""
    from torch import nn

    from simqos.models.digits import load_digits_dataset
    from simqos.models.spec import ModelSpec

    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(64, 48), nn.BatchNorm1d(48), nn.ReLU(), nn.Linear(48, 10))
    spec = ModelSpec("bn", module, torch.zeros(2, 64), None, load_digits_dataset(image=False), "bn mlp")
    captured = {}

    def snapshot(phase, epoch, loss):
        if phase == "sparsest" and epoch == FAST["epochs_sparsest"] - 1:
            captured.update({k: v.detach().clone() for k, v in module.state_dict().items()})

    net = train_nested(spec, (0.6, 0.3), TrainConfig(**FAST, calibration_samples=0), on_epoch=snapshot)
    after = module.state_dict()
    for name in ("1.weight", "1.bias"):
        assert torch.equal(after[name], captured[name]), name
    for name in ("1.running_mean", "1.running_var"):
        assert torch.equal(net.norm_buffers(net.uniform_route(1))[name], captured[name]), name
