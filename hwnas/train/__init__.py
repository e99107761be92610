"""Training: takes an architecture and a ``--data`` spec; gives datasets and splits, the training
primitives every stage shares (SGD, cosine schedule, evaluation, BN recalibration), stand-alone
training (``train_arch``), checkpoints, run directories (``RunDir``), weight loading, and the data-parallel
service of ``torchrun`` runs (``Distributed``).
"""

from hwnas.train.checkpoint import load_checkpoint, save_checkpoint
from hwnas.train.distributed import SINGLE_PROCESS, Distributed, init_distributed
from hwnas.train.data import Dataset, Split, batches, load_dataset, num_batches
from hwnas.train.loop import classification_loss, cosine_lr, evaluate, make_sgd, recalibrate_bn, set_lr
from hwnas.train.retrain import TrainConfig, preprocessing_record, train_arch
from hwnas.train.runs import RunDir
from hwnas.train.weights import check_same_arch, load_weights, read_weights

__all__ = [
    "Dataset",
    "Distributed",
    "RunDir",
    "SINGLE_PROCESS",
    "Split",
    "TrainConfig",
    "batches",
    "check_same_arch",
    "classification_loss",
    "cosine_lr",
    "evaluate",
    "init_distributed",
    "load_checkpoint",
    "load_dataset",
    "load_weights",
    "make_sgd",
    "num_batches",
    "preprocessing_record",
    "read_weights",
    "recalibrate_bn",
    "save_checkpoint",
    "set_lr",
    "train_arch",
]
