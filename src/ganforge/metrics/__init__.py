"""Evaluation: FID, KID, Inception Score, precision/recall and density/coverage.

- :func:`evaluate` scores a generator, a run, or a tensor of images against real data in one call;
- :mod:`~ganforge.metrics.features` holds the feature extractors (``inception``, ``effnet-lite0``);
- :mod:`~ganforge.metrics.scores` the metrics' mathematics on features;
- :mod:`~ganforge.metrics.stats_cache` caches real-data features per dataset, resolution and extractor;
- evaluation during training (and the best checkpoint) is wired in by
  :class:`ganforge.training.callbacks.evaluation.EvalCallback`; nothing here imports training.

Report keys carry the extractor's name (``fid_inception``, ``fid_effnet_lite0``): see
:mod:`ganforge.metrics.evaluate`.
"""
from ganforge.metrics.evaluate import METRICS, check_eval_config, evaluate, evaluate_sources, score_features  # noqa: F401
from ganforge.metrics.features import FEATURES, build_extractor  # noqa: F401
