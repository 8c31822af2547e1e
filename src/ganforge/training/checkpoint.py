"""The checkpoint store and its helpers, under their old names: they live in :mod:`ganforge.storage`
(the bottom layer), which every layer may import; this module keeps ``ganforge.training.checkpoint``
importable for code written against it."""
from ganforge.storage import (CheckpointError, CheckpointStore, StorageError, UnsafeCheckpointError,  # noqa: F401
                              atomic_torch_save, atomic_write_bytes, atomic_write_text, find_run_dir,
                              resume_command, safe_load, sha256_file, storage_error_message, to_bytes)
