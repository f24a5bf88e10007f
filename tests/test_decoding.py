"""A model that generates: the GNMT decodes free-running, is scored by exact match, and a layer
it calls once per generated token is profiled as all of its calls in a pass."""

from __future__ import annotations

import itertools

import torch
from torch import nn

from simqos.models.grammar import _SOURCE, _TARGET, BOS, EOS, PLURAL, make_sentences, translate
from simqos.models.paper import GNMT
from simqos.models.spec import IGNORE
from simqos.nested.network import NestedNetwork
from simqos.nested.scoring import score
from simqos.profiler.measure import TimerOptions, capture_layer_calls, profile_layer_level, time_in_model


def test_exact_match_counts_a_sentence_right_only_when_every_scored_token_is():
    y = torch.tensor([[1, 2, IGNORE], [1, 2, 0], [IGNORE, IGNORE, IGNORE]])
    predicted = torch.tensor([[1, 2, 5], [1, 0, 0], [3, 3, 3]])  # sentence 0 right, 1 wrong in one token
    logits = nn.functional.one_hot(predicted, 6).float()
    assert [t.tolist() for t in score(logits, y)] == [[2, 2, 0], [2, 3, 0]]
    assert [t.tolist() for t in score(logits, y, exact_sequences=True)] == [[1, 0, 0], [1, 1, 0]]


def test_the_grammar_reorders_and_agrees_over_the_whole_sentence():
    # subject "det0 noun5 plural" (gender 1, plural); verb 3; object "det1 adj2 noun4"; two PPs
    subject, obj = (0, [], 5, True), (1, [2], 4, False)
    pps = [(0, (0, [], 6, False)), (1, (1, [7, 8], 9, True))]
    source, target = translate(subject, 3, obj, pps)
    assert source[:3] == [_SOURCE["det"][0], _SOURCE["noun"][5], PLURAL] and source[3] == _SOURCE["verb"][3]
    assert target[:3] == [_TARGET["det"][0 * 4 + 1 * 2 + 1], _TARGET["noun"][5], _TARGET["suffix"][0]]
    preps = [t for t in target if t in _TARGET["prep"]]
    assert preps == [_TARGET["prep"][1], _TARGET["prep"][0]], "prepositional phrases in reverse order"
    assert target[-1] == _TARGET["verb"][3 * 4 + 1 * 2 + 1], "verb last, agreeing with the plural feminine subject"
    singular = translate((0, [], 5, False), 3, obj, pps)[1]
    assert singular[-1] == _TARGET["verb"][3 * 4 + 1 * 2 + 0] and singular[:-1] != target[:-1]
    src, tgt = make_sentences(200, seed=1)
    assert (tgt[:, 0] == BOS).all() and all(EOS in row for row in tgt)
    lengths = (src != 0).sum(axis=1)
    assert lengths.max() > 16, "sentences with two prepositional phrases are longer than the old limit"


def test_free_running_decoding_feeds_back_its_own_tokens():
    torch.manual_seed(0)
    model = GNMT(vocab=12, hidden=8, src_len=5, free_running=True).eval()
    tokens = torch.randint(3, 12, (4, 5 + 6))
    tokens[:, 5] = BOS
    with torch.no_grad():
        free = model(tokens)
        fed = torch.cat([tokens[:, :6], free.argmax(-1)[:, :-1]], dim=1)
        model.free_running = False
        forced = model(fed)
    assert free.shape == (4, 6, 12)
    assert torch.allclose(free, forced, atol=1e-5), "free-running = teacher-forced on its own predictions"
    with torch.no_grad():  # it never reads the decoder tokens after BOS
        model.free_running = True
        other = tokens.clone()
        other[:, 6:] = 3
        assert torch.equal(model(other), free)


class _ThreeSteps(nn.Module):
    """A stem, then a layer called three times per pass (as a decoder is, once per token)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.step = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for _ in range(3):
            h = torch.tanh(self.step(h))
        return h


def test_a_layer_called_per_token_is_profiled_as_all_its_calls_in_a_pass():
    torch.manual_seed(0)
    net = NestedNetwork.from_magnitude(_ThreeSteps().eval(), (0.5, 0.25), torch.zeros(1, 4), reroute_after=("stem",))
    x = torch.randn(1, 4)
    calls = capture_layer_calls(net, x)
    assert calls["stem"].calls_per_pass == 1 and calls["step"].calls_per_pass == 3
    timer = TimerOptions(n_samples=3, min_sample_s=1e-5, warmup_s=0.0)
    step = net.layers[1]
    result = profile_layer_level(net, step, 0, calls["step"], ["dense"], timer)
    assert result.flops == 2 * 3 * result.nnz, "three calls of one row each"

    ticks = itertools.count()
    timing = time_in_model(net, {0: (0, {"stem": "dense", "step": "dense"})}, x, timer, n_passes=4, label="t",
                           clock=lambda: float(next(ticks)))  # every reading of the clock is one second later
    layers = timing[0].layers
    assert layers["stem"].samples_ms == (1e3,) * 4, "one call: one second between its two readings"
    assert layers["step"].samples_ms == (3e3,) * 4, "three calls make one sample per pass"
