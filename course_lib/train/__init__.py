"""Training: one ``fit`` loop for every model of the course around one readable ``train_step``, its
callbacks, learning-rate schedules, a device-resident loader, test-time augmentation and ensembles,
and distributed helpers.

::

    from course_lib.train import fit, evaluate, EarlyStopping, Checkpoint

    history = fit(model, train_loader, optimizer=optimizer, epochs=10, val_loader=test_loader,
                  callbacks=[EarlyStopping(patience=3), Checkpoint("checkpoints/run.pt")])
    history.plot()
    print(evaluate(model, test_loader).top1)
"""

from ..models.inception import AUX_LOSS_WEIGHT
from .augment import fancy_pca, pca_colour_basis
from .callbacks import Callback, Checkpoint, EarlyStopping, TrainState
from .distributed import get_rank, get_world_size, init_distributed, is_distributed, is_main_process
from .engine import Evaluation, History, NonFiniteLoss, StepResult, TrainingDiverged, evaluate, fit, train_step
from .gpu_loader import GPULoader, RandomCropFlip
from .optim import SGD, Adam, AlexNetSGD, RMSProp
from .schedules import SCHEDULES, LRRangeTestResult, lr_range_test, lr_sequence, make_scheduler, plot_schedules
from .transfer import (
    eval_frozen_batchnorm,
    extract_features,
    find_head,
    freeze,
    freeze_summary,
    layerwise_param_groups,
    replace_head,
    unfreeze,
)
from .tta import ENSEMBLE_MODES, TTA_MODES, Ensemble, ensemble_predict, tta_predict, tta_views

__all__ = [
    "Adam",
    "AlexNetSGD",
    "AUX_LOSS_WEIGHT",
    "Callback",
    "Checkpoint",
    "EarlyStopping",
    "Ensemble",
    "ENSEMBLE_MODES",
    "ensemble_predict",
    "eval_frozen_batchnorm",
    "evaluate",
    "Evaluation",
    "extract_features",
    "fancy_pca",
    "find_head",
    "fit",
    "freeze",
    "freeze_summary",
    "get_rank",
    "get_world_size",
    "GPULoader",
    "History",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "layerwise_param_groups",
    "lr_range_test",
    "lr_sequence",
    "LRRangeTestResult",
    "make_scheduler",
    "NonFiniteLoss",
    "pca_colour_basis",
    "plot_schedules",
    "RandomCropFlip",
    "replace_head",
    "RMSProp",
    "SCHEDULES",
    "SGD",
    "StepResult",
    "train_step",
    "TrainingDiverged",
    "TrainState",
    "TTA_MODES",
    "tta_predict",
    "tta_views",
    "unfreeze",
]
