"""Each reference architecture's training recipe, as its report gives it, and the kinds of data it fits.

A reference model is only a reproduction when it is trained the way its authors trained it, so `with_recipe`
puts the report's settings into every setting the user left at its default (TrainConfig's and ModelConfig's own
defaults); a setting the user changed wins, and the run's notes say which were taken from the report. No Keras
here: the Train page and the CLI's --help read it in the server.
"""

from __future__ import annotations

import dataclasses

from core.config import TrainConfig
from core.datasets import KIND_TITLES
from core.model_config import ARCH_KINDS, ModelConfig, arch_kinds

# Model-level settings first (ModelConfig fields), then the run's (TrainConfig fields).
RECIPES: dict[str, dict[str, object]] = {
    # A UTKFace coursework report: Adam 1e-4, MAE for age, early stopping (patience 5, best weights: the run keeps
    # its best model.keras anyway). No schedule is mentioned: a constant rate.
    "vgg16": {"optimizer": "adam", "learning_rate": 1e-4, "age_loss": "mae", "early_stopping_patience": 5,
              "schedule": "constant"},
    # Levi & Hassner, CVPR 2015 workshop: 227 × 227 input, SGD at 1e-3 (their Caffe solver: momentum 0.9), batch 50.
    "levi_hassner": {"img_size": 227, "optimizer": "sgd", "learning_rate": 1e-3, "batch_size": 50,
                     "schedule": "constant"},
    # A FairFace capstone report: Adam 1e-4, batch 32, 20 epochs, class-weighted race loss, 70/15/15 split.
    "fairface_cnn": {"optimizer": "adam", "learning_rate": 1e-4, "batch_size": 32, "epochs": 20,
                     "race_class_weights": True, "schedule": "constant", "split": (0.7, 0.15, 0.15)},
}
REPORTED = {  # their published numbers, for the Train page and the README's comparison
    "vgg16": "10,000 UTKFace images: gender 90.15 %, age MAE 6.93 years",
    "levi_hassner": "Adience 5-fold: 50.7 ± 5.1 % exact, 84.7 ± 2.2 % one-off age-group accuracy",
    "fairface_cnn": "FairFace: gender, race-7 and age-group accuracy (PyTorch original)",
}
SOURCES = {
    "vgg16": "VGG16 transfer (UTKFace coursework report)",
    "levi_hassner": "Levi–Hassner age-group CNN (CVPR 2015 workshop)",
    "fairface_cnn": "FairFace multi-task CNN (capstone report)",
}


def fits(arch: str) -> str:
    """The dataset kinds an architecture trains on, by name: "UTKFace" or "UTKFace, Adience, FairFace"."""
    return ", ".join(KIND_TITLES[kind] for kind in arch_kinds(arch))


def arch_caption(arch: str) -> str:
    """One line for a picker: where the architecture comes from, what it fits, what its authors reported."""
    if arch not in ARCH_KINDS:
        return f"{arch}: trains on {fits(arch)} (UTKFace's labels)"
    return f"{SOURCES[arch]}: trains on {fits(arch)}; reported: {REPORTED[arch]}"


def with_recipe(cfg: TrainConfig) -> tuple[TrainConfig, str | None]:
    """(the config with its architecture's recipe in every setting left at its default, a note naming them)."""
    recipe = RECIPES.get(cfg.model.arch)
    if not recipe:
        return cfg, None
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    model_defaults, train_defaults = ModelConfig(), TrainConfig()
    model_changes, train_changes = {}, {}
    for name, value in recipe.items():
        target, defaults, changes = ((cfg.model, model_defaults, model_changes) if name in model_fields
                                     else (cfg, train_defaults, train_changes))
        if getattr(target, name) == getattr(defaults, name) and getattr(target, name) != value:
            changes[name] = value
    if not model_changes and not train_changes:
        return cfg, None
    applied = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **model_changes), **train_changes)
    listed = ", ".join(f"{name} {value}" for name, value in {**model_changes, **train_changes}.items())
    return applied, f"{cfg.model.arch} trains with its report's recipe where settings were left at their defaults: " \
                    f"{listed}."


def architectures_help(archs) -> str:
    """The architecture picker's help: each one's source, the dataset kinds it fits and its reported numbers."""
    return "\n".join(f"- {arch_caption(arch)}" for arch in archs)
