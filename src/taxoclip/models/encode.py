"""Text and image encoding helpers shared by predict, evaluate and bank building."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..taxonomy.templates import templates as template_set


def encode_tokens(model: Any, tokens: Any) -> Any:
    """`model.encode_text(tokens)`, but over only as many positions as the longest text needs.

    Exact for open_clip CLIP text towers with causal masks and argmax (EOT) pooling: positions
    after the EOT token never influence it. Other towers fall back to `encode_text`.
    """
    import torch
    from open_clip.transformer import text_global_pool

    trimmable = (
        hasattr(model, "token_embedding") and getattr(model, "attn_mask", None) is not None
        and getattr(model, "text_pool_type", "argmax") == "argmax"
    )
    if not trimmable:
        return model.encode_text(tokens)
    length = int((tokens != 0).sum(dim=1).max().item()) if tokens.numel() else 1
    length = max(1, min(length, tokens.shape[1]))
    tokens = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype)
    x = x + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = text_global_pool(x, tokens, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None))
    projection = model.text_projection
    if projection is not None:
        x = projection(x) if isinstance(projection, torch.nn.Linear) else x @ projection
    return x


def encode_texts(model: Any, tokenizer: Callable, texts: Sequence[str], batch_size: int = 256,
                 device: str = "cpu", normalize: bool = True, progress: bool = False) -> Any:
    """Embed texts in batches; returns a float32 [len(texts), D] tensor on the CPU."""
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    chunks = []
    starts = range(0, len(texts), batch_size)
    with torch.inference_mode():
        for start in tqdm(starts, desc="encoding text", unit="batch", disable=not progress):
            tokens = tokenizer(list(texts[start:start + batch_size])).to(device)
            features = encode_tokens(model, tokens).float()
            chunks.append((F.normalize(features, dim=-1) if normalize else features).cpu())
    if not chunks:
        return torch.zeros(0, 0)
    return torch.cat(chunks)


def class_embeddings(model: Any, tokenizer: Callable, class_texts: Sequence[str],
                     templates: str | Sequence[str] = "openai", batch_size: int = 256,
                     device: str = "cpu", progress: bool = False) -> Any:
    """Zero-shot class vectors: each class's normalised template embeddings averaged, renormalised.

    Returns a float32 [N, D] tensor (rows = classes). `templates` is a set name (`openai`: 80,
    `bioclip`: 81) or explicit format strings.
    """
    import torch.nn.functional as F

    chosen = template_set(templates) if isinstance(templates, str) else tuple(templates)
    prompts = [template.format(text) for text in class_texts for template in chosen]
    features = encode_texts(model, tokenizer, prompts, batch_size, device, normalize=True, progress=progress)
    features = features.reshape(len(class_texts), len(chosen), -1).mean(dim=1)
    return F.normalize(features, dim=-1)
