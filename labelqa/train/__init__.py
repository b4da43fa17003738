"""Produce what the detectors need from features alone: training dynamics and out-of-sample probabilities.

* :mod:`labelqa.train.threshold`: disjoint threshold-sample sets for AUM.
* :mod:`labelqa.train.torch_model`: a small torch model (linear or MLP)
  trained with threshold samples, recording per-epoch logits (needs torch:
  ``pip install 'labelqa[torch]'``).
* :mod:`labelqa.train.sklearn_cv`: scikit-learn models (``logreg``, ``hgb``,
  ``knn``, ``mlp``) and their fold loop (stratified or group folds;
  one-vs-rest for multi-label data); no torch.
* :mod:`labelqa.train.crossval`: K-fold out-of-sample predicted
  probabilities for every ``labelqa train --model`` (the scikit-learn ones,
  or the torch model).
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
from labelqa.train.sklearn_cv import cross_val_proba, make_model
from labelqa.train.threshold import assign_threshold_samples, assigned_labels

__all__ = ["AUMRecorder", "DynamicsWriter", "assign_threshold_samples", "assigned_labels", "cross_val_proba",
           "cross_val_probs", "make_model", "save_dynamics"]
