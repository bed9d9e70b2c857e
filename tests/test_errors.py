"""core/errors.py: every error a user can fix shares one base, so pages and the CLI catch them in one place."""

from __future__ import annotations

import pytest

from core.config import TrainingError
from core.datasets import DatasetError
from core.errors import UserError
from core.evaluation import EvaluationError
from core.export import ExportError
from core.faces import DetectorError
from core.images import ImageError
from core.model_config import ConfigError
from core.registry import ModelError
from core.saliency import SaliencyError
from core.slots import Busy
from core.workers import WorkerError


@pytest.mark.parametrize("error", [Busy, ConfigError, DatasetError, DetectorError, EvaluationError,
                                   ExportError, ImageError, ModelError, SaliencyError, TrainingError, WorkerError])
def test_each_user_facing_error_is_a_user_error(error):
    assert issubclass(error, UserError)
