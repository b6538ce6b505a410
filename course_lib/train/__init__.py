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
from .tta import ENSEMBLE_MODES, TTA_MODES, Ensemble, ensemble_predict, tta_predict, tta_views

__all__ = [
    "fit",
    "evaluate",
    "train_step",
    "StepResult",
    "NonFiniteLoss",
    "History",
    "Evaluation",
    "TrainingDiverged",
    "AUX_LOSS_WEIGHT",
    "Callback",
    "TrainState",
    "EarlyStopping",
    "Checkpoint",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "get_rank",
    "get_world_size",
    "GPULoader",
    "RandomCropFlip",
    "SCHEDULES",
    "make_scheduler",
    "lr_sequence",
    "plot_schedules",
    "lr_range_test",
    "LRRangeTestResult",
    "TTA_MODES",
    "ENSEMBLE_MODES",
    "tta_views",
    "tta_predict",
    "Ensemble",
    "ensemble_predict",
    "pca_colour_basis",
    "fancy_pca",
    "SGD",
    "AlexNetSGD",
    "RMSProp",
    "Adam",
]
