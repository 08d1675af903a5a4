"""Prompt templates for zero-shot classifiers.

The 80 OpenAI ImageNet templates come from open_clip (the same list pybioclip uses for
inference); BioCLIP's own zero-shot evaluation adds `a photo of {}.` for 81.
"""

from __future__ import annotations

from functools import cache

BIOCLIP_EXTRA_TEMPLATE = "a photo of {}."


@cache
def openai_templates() -> tuple[str, ...]:
    """The 80 OpenAI ImageNet templates as format strings (`a bad photo of a {}.` ...)."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return tuple(template("{}") for template in OPENAI_IMAGENET_TEMPLATES)


def bioclip_templates() -> tuple[str, ...]:
    """The 81 templates of BioCLIP's zero-shot evaluation: `a photo of {}.` + the 80."""
    return (BIOCLIP_EXTRA_TEMPLATE, *openai_templates())


TEMPLATE_SETS = {"openai": openai_templates, "bioclip": bioclip_templates}


def templates(name: str = "openai") -> tuple[str, ...]:
    """A named template set: `openai` (80, inference tools) or `bioclip` (81, paper evaluation)."""
    try:
        return TEMPLATE_SETS[name]()
    except KeyError:
        raise ValueError(f"unknown template set {name!r}; expected one of {', '.join(TEMPLATE_SETS)}") from None


def fill(names: list[str], template_set: str = "openai") -> list[list[str]]:
    """For each class name, its prompts under every template of the set."""
    chosen = templates(template_set)
    return [[template.format(name) for template in chosen] for name in names]
