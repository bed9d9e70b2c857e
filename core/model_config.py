"""What a model is, without building it: the architecture names, age heads and losses, and `ModelConfig`.
Kept apart from the builders in core/models.py so that the CLI's --help, the pages and config files can use them
without importing Keras (seconds of TensorFlow start-up)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from core.errors import UserError

IN_HOUSE_ARCHITECTURES = ("custom_cnn", "multitask_cnn", "resnet50", "residual_cnn")
# Reference systems rebuilt as their reports describe them (core/reference_builders.py, core/recipes.py).
REFERENCE_ARCHITECTURES = ("vgg16", "levi_hassner", "fairface_cnn")
ARCHITECTURES = (*IN_HOUSE_ARCHITECTURES, *REFERENCE_ARCHITECTURES)
DATASET_KINDS = ("utkface", "adience", "fairface")  # core.datasets.KINDS, without importing pandas here
# The dataset kinds each architecture trains on. A reference model learns its own dataset's labels (its label
# space, core/label_spaces.py), so it fits that dataset only; the in-house models learn UTKFace's heads from any
# (a head without labels in a dataset is masked: Adience has no race, FairFace no age in years).
ARCH_KINDS = {"vgg16": ("utkface",), "levi_hassner": ("adience",), "fairface_cnn": ("fairface",)}
ARCH_SPACES = {"levi_hassner": "adience", "fairface_cnn": "fairface"}  # any other: "utkface"
# One line per architecture, shown beside its name on the Train page: a new architecture adds its line here.
ARCHITECTURE_NOTES = {
    "custom_cnn": "the reference CNN: three conv blocks, two dense layers, three heads",
    "multitask_cnn": "a shared trunk that splits into a branch per task (age, gender, race)",
    "resnet50": "a ResNet-50 backbone (ImageNet weights when available): the largest and slowest",
    "residual_cnn": "a small ResNet trained from scratch, sized for a 2-core CPU: the shipped model's kind",
    "vgg16": "VGG16 transfer (a UTKFace coursework report): frozen but its last three layers",
    "levi_hassner": "the Levi–Hassner CNN (CVPR 2015 workshop): Adience's 8 age groups and gender",
    "fairface_cnn": "the FairFace capstone CNN: four conv blocks, 9 age groups, gender, 7 races",
}
AGE_HEADS = ("regression", "distribution")
AGE_LOSSES = ("mae", "mse", "huber")
OUTPUTS = ("age", "gender", "race")
MIN_IMG_SIZE = 32  # three 2× poolings (custom_cnn) and ResNet-50's 32× downsampling need at least this


class ConfigError(UserError):
    """A model setting that cannot be built; the message names it."""


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "custom_cnn"
    img_size: int = 128
    # "regression": one linear unit. "distribution": softmax over years + its expectation (label-distribution
    # learning), which trains better and yields an uncertainty for free.
    age_head: str = "regression"
    width: int = 32  # base filter count for the CNNs built here (custom_cnn's reference is fixed at 32)
    dropout: float = 0.3
    l2: float = 1e-4  # used by the branched / residual models
    imagenet: bool = True  # resnet50 and vgg16: try ImageNet weights, fall back to random init when offline

    @classmethod
    def tiny(cls, arch: str = "custom_cnn", **overrides) -> ModelConfig:
        """Small enough to build and fit in well under a second per step; for tests."""
        return cls(**{"arch": arch, "img_size": 32, "width": 8, "imagenet": False, **overrides})

    @property
    def label_space(self) -> str:
        """The label space its heads speak (core/label_spaces.py SPACES key)."""
        return ARCH_SPACES.get(self.arch, "utkface")

    def problems(self) -> list[str]:
        """What cannot be built as set, one phrase each (empty when the model can be built)."""
        checks = [
            (self.arch not in ARCHITECTURES, f"architecture {self.arch!r} is not one of {', '.join(ARCHITECTURES)}"),
            (self.age_head not in AGE_HEADS, f"age head {self.age_head!r} is not one of {', '.join(AGE_HEADS)}"),
            (self.img_size < MIN_IMG_SIZE, f"image size must be at least {MIN_IMG_SIZE} px"),
            (self.label_space != "utkface" and self.age_head == "distribution",
             f"{self.arch} predicts age groups, so it has no distribution-over-years age head"),
        ]
        return [message for failed, message in checks if failed]

    def validate(self) -> None:
        """Raise ConfigError naming the first setting that cannot be built."""
        if problems := self.problems():
            raise ConfigError(f"Cannot build the model: {problems[0]}.")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))


def arch_kinds(arch: str) -> tuple[str, ...]:
    """The dataset kinds an architecture trains on."""
    return ARCH_KINDS.get(arch, DATASET_KINDS)
