"""Mixed-text-type contrastive training (and the paper's CE baselines), from one CPU to torchrun.

    from taxoclip.train import load_config, train
    run_dir = train(load_config("configs/train/tiny-cpu.yaml", ["optim.epochs=2"]))

Modules, in pipeline order: `config` (the recipe), `data` (webdataset batches in a seeded
order), `captions` (text type per image or per batch), `model`, `baselines`, `loop`,
`evaluation`, `checkpoints`, `distributed`.
"""

from .config import TrainConfig, load_config


def train(config: TrainConfig, resume: bool = False):
    """Run training (see `taxoclip.train.loop.train`); returns the run directory."""
    from .loop import train as run

    return run(config, resume=resume)


__all__ = ["TrainConfig", "load_config", "train"]
