"""The train command's options, one per `ModelConfig` and `TrainConfig` field and derived from them: names, types,
choices and defaults come from the dataclasses, so a new setting is a new option and `--help` shows the defaults
the code really uses. `config_args` goes the other way, from a config to the options that reproduce it (a model
card's command). No Keras here: `python -m core train --help` answers without starting TensorFlow."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from core import settings
from core.config import OPTIMIZERS, SCHEDULES, TrainConfig
from core.crops import CROP_MODES
from core.datasets import KINDS, detect_kind
from core.model_config import AGE_HEADS, AGE_LOSSES, ARCHITECTURES, ModelConfig

CHOICES = {"arch": ARCHITECTURES, "age_head": AGE_HEADS, "age_loss": AGE_LOSSES, "schedule": SCHEDULES,
           "optimizer": OPTIMIZERS, "crops": CROP_MODES, "dataset": KINDS}
RENAMED = {"data_dir": "--data", "learning_rate": "--lr", "out_dir": "--out"}  # shorter than the field's name
TYPES = {"int": int, "float": float, "str": str}  # a field's annotation (a string here) → the option's type
# A setting that is on by default is turned off by --no-<name>: its help says what that does.
HELP = {
    "arch": "architecture; vgg16, levi_hassner and fairface_cnn are reference models that train on UTKFace, "
            "Adience and FairFace respectively, with their reports' recipes where settings are left at defaults",
    "img_size": "input size in pixels",
    "age_head": "regression: one number; distribution: a softmax over years, whose spread is the uncertainty",
    "width": "base filter count (multitask_cnn, residual_cnn)",
    "dropout": "dropout rate before the heads",
    "l2": "L2 weight decay (the branched and residual models)",
    "imagenet": "resnet50, vgg16: start from random weights instead of ImageNet's",
    "dataset": "dataset kind",
    "data_dir": "dataset folder (default: $FACE_DATA_DIR or the bundled sample)",
    "learning_rate": "peak learning rate",
    "optimizer": "adam, or sgd with momentum 0.9 (levi_hassner's recipe)",
    "age_loss": "regression head loss",
    "age_weight": "age loss weight",
    "gender_weight": "gender loss weight",
    "race_weight": "race loss weight",
    "age_sigma": "distribution head: the spread of the label distribution, in years",
    "race_class_weights": "balance races in the loss",
    "gender_class_weights": "balance genders in the loss",
    "augment": "train without augmentation",
    "crops": "app: faces detected and aligned as uploads are; dataset: the dataset's own crops",
    "schedule": "learning-rate schedule: cosine (with warm-up), plateau or constant",
    "warmup_epochs": "cosine schedule: epochs of warm-up",
    "early_stopping_patience": "epochs without validation gain before stopping",
    "keep_epochs": "also keep every epoch's model in the run's epochs/ folder (for python -m core average)",
    "freeze_backbone_epochs": "resnet50: epochs with a frozen backbone first",
    "finetune_lr_factor": "learning-rate factor for fine-tuning after the frozen epochs",
    "split": "train,val,test fractions",
    "limit": "use a seeded sample of N images (0: all)",
    "init_from": "a .keras model of the same architecture to start from (warm restart)",
    "teachers": "comma-separated .keras models whose averaged outputs the model also learns from (distillation)",
    "teacher_weight": "with --teachers: their share of each probability target, the labels keep the rest",
    "split_file": "reuse a run's split.csv: its images keep their split (continue that run honestly)",
    "seed": "random seed",
    "scale_learning_rate": "keep --lr as given on several replicas (default: scaled with the global batch, the "
                           "linear scaling rule)",
    "out_dir": "runs folder (default: $FACE_RUNS_DIR or ./runs)",
}


@dataclasses.dataclass(frozen=True)
class Option:
    """One config field as a command-line option."""
    name: str
    default: object
    annotation: str
    in_model: bool  # a ModelConfig field (else TrainConfig's)

    @property
    def flag(self) -> str:
        if self.default is True:
            return f"--no-{self.name.replace('_', '-')}"
        return RENAMED.get(self.name, f"--{self.name.replace('_', '-')}")

    @property
    def metavar(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_").upper()

    def text(self, value) -> str:
        return ",".join(str(part) for part in value) if isinstance(value, tuple) else str(value)


def options() -> list[Option]:
    """Every setting of a training run, the model's first."""
    model, train = ModelConfig(), TrainConfig()
    return ([Option(f.name, getattr(model, f.name), str(f.type), True) for f in dataclasses.fields(ModelConfig)]
            + [Option(f.name, getattr(train, f.name), str(f.type), False) for f in dataclasses.fields(TrainConfig)
               if f.name != "model"])


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected three comma-separated fractions, got {text!r}")
    return values


def add_train_options(parser: argparse.ArgumentParser, kind_from_folder: bool = False) -> None:
    """One option per setting, defaulting to the config's own default (so options left out keep it). With
    `kind_from_folder`, a left-out --dataset is absent from the parsed options: `with_kind_of_folder` reads it
    from the folder."""
    for option in options():
        common = {"dest": option.name, "help": HELP.get(option.name, option.name.replace("_", " "))}
        if option.name == "dataset" and kind_from_folder:
            parser.add_argument(option.flag, choices=CHOICES["dataset"], default=argparse.SUPPRESS,
                                help="dataset kind (default: the folder's own, read from its files)",
                                dest=option.name)
        elif isinstance(option.default, bool):
            parser.add_argument(option.flag, action="store_false" if option.default else "store_true",
                                default=option.default, **common)
        elif isinstance(option.default, tuple):  # argparse runs a string default through `type` too
            parser.add_argument(option.flag, type=_fractions, default=option.text(option.default),
                                metavar="TRAIN,VAL,TEST", **common)
        else:
            option_type = TYPES.get(option.annotation, type(option.default) if option.default is not None else str)
            parser.add_argument(option.flag, type=option_type, choices=CHOICES.get(option.name),
                                default=option.default, metavar=None if option.name in CHOICES else option.metavar,
                                **common)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig that parsed options describe (other attributes of `args`, e.g. the command, are ignored)."""
    values = vars(args)
    model = {s.name: values[s.name] for s in options() if s.in_model}
    return TrainConfig(model=ModelConfig(**model), **{s.name: values[s.name] for s in options() if not s.in_model})


def with_kind_of_folder(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of options parsed with `kind_from_folder`: a left-out --dataset is the kind the folder's
    files show (so `--data <an Adience folder>` needs no `--dataset adience`), else the config's default."""
    values = vars(args)
    if "dataset" in values:
        return config_from_args(args)
    folder = Path(values["data_dir"] or settings.data_dir()).expanduser()
    kind = detect_kind(folder) if folder.is_dir() else TrainConfig.dataset
    return config_from_args(argparse.Namespace(**values, dataset=kind))


def parse_config(argv: list[str]) -> TrainConfig:
    """The TrainConfig of a train command's options, e.g. those `config_args` wrote."""
    parser = argparse.ArgumentParser(prog="python -m core train")
    add_train_options(parser)
    return config_from_args(parser.parse_args(argv))


def config_args(cfg: TrainConfig) -> list[str]:
    """The options that reproduce `cfg`: one for every setting that differs from its default."""
    args = []
    for option in options():
        value = getattr(cfg.model if option.in_model else cfg, option.name)
        if value == option.default:
            continue
        args += [option.flag] if isinstance(value, bool) else [option.flag, option.text(value)]
    return args
