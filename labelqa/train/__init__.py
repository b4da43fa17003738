"""Produce what the detectors need from features alone: training dynamics and out-of-sample probabilities.

* :mod:`labelqa.train.threshold`: disjoint threshold-sample sets for AUM.
* :mod:`labelqa.train.torch_model`: a small torch model (linear or MLP)
  trained with threshold samples, recording per-epoch logits (needs torch:
  ``pip install 'labelqa[torch]'``).
* :mod:`labelqa.train.crossval`: K-fold out-of-sample predicted
  probabilities (scikit-learn logistic regression, or the torch model).

torch is imported lazily: importing this package never imports it.
"""

from labelqa.train.crossval import cross_val_probs
from labelqa.train.threshold import assign_threshold_samples, assigned_labels

__all__ = ["assign_threshold_samples", "assigned_labels", "cross_val_probs"]
