"""Typed, validated run configuration.

A run is described by one :class:`Config`: nested dataclasses, one per concern (:mod:`.schema`).  Configs
come from a preset shipped in the package (``ganforge/presets/NAME.yaml``), a YAML file, and dotted
``key=value`` overrides, merged in that order (:mod:`.parsing`).  Unknown keys and wrong types are errors
that name the key and the closest valid one (StudioGAN-style strictness), values and combinations are
checked before anything is written (:mod:`.validation`), and the fully resolved config is saved in every
run directory so a run can always be reproduced.
"""
from ganforge.config.schema import (AugmentConfig, Config, ConfigError, DataConfig, EMAConfig,  # noqa: F401
                                    EvalConfig, GuardConfig, LossConfig, ModelConfig, NoiseConfig, OptimConfig,
                                    OptimPair, TrainConfig)
from ganforge.config.validation import (GROUPS_PER_BATCH, IMAGE_SIZES, check_latent_groups,  # noqa: F401
                                        validate)
from ganforge.config.parsing import (PRESET_DIR, RETIRED, WRITTEN_BY_GANFORGE, _all_keys, _build, _deep_merge,  # noqa: F401,E402
                                     apply_overrides, from_dict, load, parse_override, preset_dict, preset_names,
                                     read_yaml)
