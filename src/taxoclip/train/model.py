"""The model being trained: any open_clip architecture, from scratch or from any `--model` spec."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import TaxoclipError
from ..models import layout
from ..models.encode import encode_tokens
from .config import ModelSection


@dataclass
class BuiltModel:
    """An open_clip model (fp32, CPU, train mode) with what a checkpoint must record about it."""

    clip: Any
    model_cfg: dict
    preprocess_cfg: dict
    tokenizer: Any
    parent: str | None
    """The identity label of the initial weights (None when built from scratch)."""


def build_model(section: ModelSection, seed: int) -> BuiltModel:
    """The open_clip model of a recipe's `model` section; random inits are seeded by `seed`."""
    from open_clip.model import get_model_preprocess_cfg

    torch.manual_seed(seed)  # identical random init on every process (DDP also broadcasts rank 0's)
    if section.model_cfg is not None:
        model_cfg = copy.deepcopy(section.model_cfg)
        try:
            clip = _from_config(model_cfg)
        except (TypeError, ValueError, KeyError, AssertionError) as err:
            raise TaxoclipError(f"model.model_cfg is not a valid open_clip config: {err}") from None
        tokenizer = _tokenizer_for(model_cfg)
        parent = None
    else:
        from ..models import load_model

        loaded = load_model(section.init, device="cpu", precision="fp32")
        clip, model_cfg, tokenizer = loaded.model, loaded.model_cfg, loaded.tokenizer
        parent = loaded.identity.label
    preprocess_cfg = complete_preprocess_cfg(get_model_preprocess_cfg(clip))
    if not hasattr(clip, "encode_image") or not hasattr(clip, "logit_scale"):
        raise TaxoclipError(f"{type(clip).__name__} is not a contrastive open_clip model")
    if section.grad_checkpointing:
        clip.set_grad_checkpointing(True)
    clip.train()
    return BuiltModel(clip, model_cfg, preprocess_cfg, tokenizer, parent)


def _from_config(model_cfg: dict) -> Any:
    """A randomly initialised CLIP (or CustomTextCLIP) from an explicit open_clip config."""
    import open_clip

    kwargs = copy.deepcopy(model_cfg)
    custom = kwargs.pop("custom_text", False) or "hf_model_name" in kwargs.get("text_cfg", {})
    if "multimodal_cfg" in kwargs:
        raise TaxoclipError("CoCa models (multimodal_cfg) need a captioning loss; taxoclip trains contrastive models")
    return (open_clip.CustomTextCLIP if custom else open_clip.CLIP)(**kwargs)


def _tokenizer_for(model_cfg: dict) -> Any:
    from open_clip.tokenizer import HFTokenizer, SimpleTokenizer

    text_cfg = model_cfg.get("text_cfg", {})
    context_length = int(text_cfg.get("context_length", 77))
    if text_cfg.get("hf_tokenizer_name"):
        return HFTokenizer(text_cfg["hf_tokenizer_name"], context_length=context_length)
    return SimpleTokenizer(context_length=context_length)


def complete_preprocess_cfg(preprocess_cfg: dict) -> dict:
    """Every preprocessing field, with open_clip's defaults (OpenAI mean/std) where the model has none."""
    import dataclasses

    from open_clip.transform import PreprocessCfg

    keys = PreprocessCfg.__dataclass_fields__
    cfg = PreprocessCfg(**{k: v for k, v in preprocess_cfg.items() if k in keys})
    out = dataclasses.asdict(cfg)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def image_transforms(preprocess_cfg: dict) -> tuple[Any, Any, PixelNormalizer]:
    """(train, eval) transforms of open_clip for the model, ending in uint8 tensors, and the
    normalizer that finishes them (to float, mean/std) on the training device.

    open_clip's transforms end with ToTensor + Normalize; those two run on the whole batch in
    the training process instead, so that data workers hand over 4x fewer bytes. The result is
    the same normalisation, (x / 255 - mean) / std, up to float rounding.
    """
    from open_clip.transform import PreprocessCfg, image_transform_v2

    keys = PreprocessCfg.__dataclass_fields__
    cfg = PreprocessCfg(**{k: v for k, v in preprocess_cfg.items() if k in keys})
    train, evaluate = image_transform_v2(cfg, is_train=True), image_transform_v2(cfg, is_train=False)
    return _to_uint8(train), _to_uint8(evaluate), PixelNormalizer(cfg.mean, cfg.std)


def _to_uint8(transform: Any) -> Any:
    from torchvision.transforms import Compose, Normalize, PILToTensor, ToTensor

    steps = list(getattr(transform, "transforms", []))
    if len(steps) < 2 or not isinstance(steps[-1], Normalize) or not isinstance(steps[-2], ToTensor):
        raise TaxoclipError(f"unexpected open_clip transform (no ToTensor + Normalize at the end): {transform}")
    return Compose([*steps[:-2], PILToTensor()])


class PixelNormalizer:
    """uint8 [n, 3, H, W] images -> normalised float tensors, on whatever device they are."""

    def __init__(self, mean: Any, std: Any) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        mean, std = self.mean.to(images.device), self.std.to(images.device)
        return (images.float() - mean) / std


def load_weights(module: Any, checkpoint_dir: str | Path) -> None:
    """Load a checkpoint's safetensors weights into `module` (strict)."""
    from safetensors.torch import load_model

    load_model(module, str(Path(checkpoint_dir) / layout.WEIGHTS_SAFETENSORS))


class ContrastiveModel(torch.nn.Module):
    """An open_clip model behind one `forward(images, tokens)` (the call DDP hooks), returning
    normalised image and text features, the logit scale and (SigLIP models) the logit bias.

    Text goes through `encode_tokens`, which runs the text tower over only as many positions as
    the longest caption needs (exact for causal CLIP towers; captions are far shorter than 77).
    """

    def __init__(self, clip: Any) -> None:
        super().__init__()
        self.clip = clip

    def forward(self, images: Any, tokens: Any) -> tuple[Any, Any, Any, Any]:
        image_features = F.normalize(self.clip.encode_image(images), dim=-1)
        text_features = F.normalize(encode_tokens(self.clip, tokens), dim=-1)
        return image_features, text_features, self.clip.logit_scale.exp(), getattr(self.clip, "logit_bias", None)
