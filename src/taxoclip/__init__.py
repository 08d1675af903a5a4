"""taxoclip: BioCLIP for the whole tree of life.

Stages, one subpackage each: `taxonomy` (names, lineages, text types), `models` (loading and
saving open_clip checkpoints in the official layouts), `data` (building training shards),
`train`, `evaluate` and `predict`. The CLI (`taxoclip ...`) is a thin layer over them.
Heavy libraries (torch, open_clip) are imported only when a stage needs them.
"""

__version__ = "0.1.0"
