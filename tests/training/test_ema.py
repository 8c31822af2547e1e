"""The EMA generator: the closed-form average, its decay schedule, BatchNorm buffers, and where it is used."""
from __future__ import annotations

import torch

from ganforge.config import EMAConfig
from ganforge.training.ema import GeneratorEMA
from ganforge.training.trainer import Trainer


def test_ema_equals_the_closed_form_average_of_a_real_run(tmp_path, image_folder, tiny, real_batches):
    decay, steps = 0.8, 5
    trainer = Trainer(tiny(image_folder, "ema.enabled=true", f"ema.decay={decay}", "ema.warmup=false"),
                      tmp_path, log_format="quiet")
    history = [[p.detach().clone() for p in trainer.G.parameters()]]  # p_0: the initial weights
    batches = real_batches(steps)
    for s in range(steps):
        out = trainer.step_fn([batches[s]], step=s)
        trainer.progress.step = s + 1
        trainer.after_step(out)
        history.append([p.detach().clone() for p in trainer.G.parameters()])
    # ema_n = d^n p_0 + sum_k (1 - d) d^(n-k) p_k
    for i, averaged in enumerate(trainer.G_ema.parameters()):
        expected = decay ** steps * history[0][i]
        for k in range(1, steps + 1):
            expected = expected + (1 - decay) * decay ** (steps - k) * history[k][i]
        assert torch.allclose(averaged, expected, atol=1e-7)
        assert not torch.allclose(averaged, history[-1][i])  # an average, not the current weights
    # BatchNorm statistics are copied from G, not averaged (see ganforge.training.ema).
    for b_avg, b in zip(trainer.G_ema.buffers(), trainer.G.buffers()):
        assert torch.equal(b_avg, b)
    assert trainer.sampling_generator() is trainer.G_ema


def test_ema_decay_schedule_start_step_and_warmup():
    G = torch.nn.Linear(2, 2)
    ema = GeneratorEMA(G, EMAConfig(enabled=True, decay=0.999, start_step=10, warmup=True))
    assert [ema.decay_at(s) for s in (1, 10)] == [0.0, 0.0]  # a copy up to start_step
    assert ema.decay_at(11) == 2 / 11 and ema.decay_at(110) == 101 / 110
    assert ema.decay_at(10**7) == 0.999
    with torch.no_grad():
        G.weight.fill_(3.0)
    ema.update(G, 5)
    assert torch.equal(ema.model.weight, G.weight)
    plain = GeneratorEMA(G, EMAConfig(enabled=True, decay=0.9, warmup=False))
    assert plain.decay_at(1) == 0.9
