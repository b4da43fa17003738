"""Produce what the detectors need from features alone: training dynamics and out-of-sample probabilities.

* :mod:`labelqa.train.threshold`: disjoint threshold-sample sets for AUM.
* :mod:`labelqa.train.torch_model`: a small torch model (linear or MLP)
  trained with threshold samples, recording per-epoch logits (needs torch:
  ``pip install 'labelqa[torch]'``).
* :mod:`labelqa.train.crossval`: K-fold out-of-sample predicted
  probabilities (scikit-learn logistic regression, or the torch model).
* :mod:`labelqa.train.recorder`: :class:`AUMRecorder`, per-epoch logits from
  your own training loop (numpy arrays or torch tensors).
* :mod:`labelqa.train.dynamics_writer`: the writers of the dynamics folder
  (:class:`DynamicsWriter`, :func:`save_dynamics`); the reader is
  :mod:`labelqa.data.dynamics`.

torch is imported lazily: importing this package never imports it.
"""

from labelqa.train.crossval import cross_val_probs
from labelqa.train.dynamics_writer import DynamicsWriter, save_dynamics
from labelqa.train.recorder import AUMRecorder
from labelqa.train.threshold import assign_threshold_samples, assigned_labels

__all__ = ["AUMRecorder", "DynamicsWriter", "assign_threshold_samples", "assigned_labels", "cross_val_probs",
           "save_dynamics"]
