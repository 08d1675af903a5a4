"""Name the organisms in photos at any rank, or embed them: the `taxoclip predict/embed/taxa` API.

Public pieces (also used by evaluation): `Predictor` (model + bank + streaming predict/embed),
`LabelBank` and its builders (`open_bank`, `tol_bank`, `custom_label_bank`, `taxonomy_bank`),
`aggregate_to_rank` (vectorised rank sums), `expand_inputs` / `load_image` (inputs), and
`open_writer` (streaming, resumable outputs).
"""

from .banks import LabelBank, custom_label_bank, load_bank, open_bank, taxonomy_bank, tol_bank
from .inputs import InputItem, expand_inputs, load_image
from .outputs import open_writer
from .predictor import Predictor, resolve_device
from .ranks import Groups, aggregate, aggregate_to_rank

__all__ = [
    "Groups", "InputItem", "LabelBank", "Predictor", "aggregate", "aggregate_to_rank", "custom_label_bank",
    "expand_inputs", "load_bank", "load_image", "open_bank", "open_writer", "resolve_device", "taxonomy_bank",
    "tol_bank",
]
