"""Stage 4, the supernet: takes a space; gives one weight-sharing network of every candidate, path
samplers (uniform, fair, Gumbel-TopK), binary gates, DropBlock, the weight-training loop
(``train_supernet``) and scoring of a path with inherited weights (``SupernetEvaluator``).
"""

from hwnas.supernet.binary_gates import (TwoPaths, binary_connect_grad, check_mixable, gated_forward, log_prob,
                                         one_hot_gates, pair_probs, rescale_pair, sample_path, sample_two_paths)
from hwnas.supernet.dropblock import DropBlockSchedule, drop_block
from hwnas.supernet.evaluator import SupernetEvaluator
from hwnas.supernet.samplers import SAMPLERS, PathSampler, constrained_uniform, gumbel_topk, uniform_paths
from hwnas.supernet.supernet import SHARING, SuperNet
from hwnas.supernet.training import SupernetTrainConfig, step_rng, train_supernet

__all__ = [
    "DropBlockSchedule",
    "PathSampler",
    "SAMPLERS",
    "SHARING",
    "SuperNet",
    "SupernetEvaluator",
    "SupernetTrainConfig",
    "TwoPaths",
    "binary_connect_grad",
    "check_mixable",
    "constrained_uniform",
    "drop_block",
    "gated_forward",
    "gumbel_topk",
    "log_prob",
    "one_hot_gates",
    "pair_probs",
    "rescale_pair",
    "sample_path",
    "sample_two_paths",
    "step_rng",
    "train_supernet",
    "uniform_paths",
]
