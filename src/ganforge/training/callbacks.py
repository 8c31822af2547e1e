"""What a run does besides training, as callbacks of the loop (see Trainer.fit).

A callback is any object with some of ``on_start(trainer)``, ``on_log(trainer, record)``,
``on_epoch_end(trainer, epoch)`` and ``on_end(trainer)``.
"""
from __future__ import annotations

from ganforge.config import Config


def default_callbacks(cfg: Config, trainer) -> list:
    callbacks: list = []
    return callbacks
