"""Assemble a validated :class:`LabelData` from labels, probabilities, classes, ids and embeddings.

:func:`validated_fields` runs the checks of each concern (ids, labels or
label sets, classes, probabilities, embeddings; one module each) in the
order that decides which error a bad input gets, and raises one
:class:`LabelqaError` that says what is wrong, where (file, column, 0-based
row, id) and how to fix it. Used by :func:`labelqa.data.load` and
:meth:`LabelData.from_arrays`.

Multi-label data (``task="multilabel"``): labels are label sets (a list per
row, or an N x K 0/1 matrix) stored as an N x K bool matrix; probabilities are
independent per class, each in [0, 1], and rows need not sum to 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from labelqa.models import DEFAULT_COMBINE
from labelqa.data.arrays import is_list_type, to_arrow_1d, type_name
from labelqa.data.class_order import check_class_order
from labelqa.data.classes import check_class_count, given_classes_like, infer_classes, normalize_classes
from labelqa.data.embeddings import check_embeddings
from labelqa.data.ids import convert_ids
from labelqa.data.labels import encode_labels, normalize_labels
from labelqa.data.labelsets import (
    encode_label_items,
    is_label_matrix,
    label_matrix,
    label_set_items,
    label_sets_to_arrow,
    scatter_label_sets,
)
from labelqa.data.probabilities import (
    RowFacts,
    as_prob_matrix,
    check_classes_fit,
    check_min_classes,
    check_multilabel_probabilities,
    check_probabilities,
)
from labelqa.data.rows import Rows, Where
from labelqa.errors import LabelqaError

#: The ``task`` values of :func:`validated_fields`.
TASKS = ("multiclass", "multilabel")


def validated_fields(
    labels: Any,
    pred_probs: Any,
    *,
    classes: Any = None,
    ids: Any = None,
    renormalize: bool = False,
    source: str | None = None,
    label_col: str = "label",
    id_col: str | None = None,
    meta: dict[str, Any] | None = None,
    task: str = "multiclass",
    embeddings: Any = None,
    combine_models: str = DEFAULT_COMBINE,
    model_names: Sequence[str] | None = None,
    trust_class_order: bool = False,
    prob_facts: RowFacts | None = None,
) -> dict[str, Any]:
    """Validate labels, probabilities, classes, ids and embeddings: the fields of a :class:`LabelData`.

    Returns the keyword arguments of ``LabelData(...)`` (this module does not
    import the model, so the model can import it).

    Args:
        labels: Multiclass: one label per row (list, numpy, pandas or pyarrow):
            class values (ints or strings) or, when no class is an int, integer
            codes 0..K-1. Nulls are rejected; integral floats become ints;
            bools become 0/1. Multi-label: either an N x K 0/1 or bool matrix
            (numpy array or DataFrame; column ``k`` is ``classes[k]``) or one
            label set per row (a pyarrow list array, a list of lists, a Series
            of lists) holding class values or codes as above; an empty set is
            allowed, a null set, a null item or a class listed twice in a row
            are errors.
        pred_probs: N x K numeric array; float32 stays float32, anything else
            becomes float64. Column ``k`` belongs to ``classes[k]``.
        classes: Class values in column order. ``None``: 0..K-1 when labels are
            integers in [0, K) (or a label matrix), else the sorted unique
            labels when there are K. Classes take the labels' type (``"3"``
            becomes ``3`` for int labels).
        ids: Row ids, unique and non-null; default the row index (int64).
        renormalize: Multiclass only: divide each row by its sum instead of
            rejecting rows that do not sum to 1 (rows summing to 0 are still
            rejected). An error for multi-label data, whose rows need not sum
            to 1.
        source: Where the data came from (a path), for messages.
        label_col: Label column name, for messages.
        id_col: Id column name; when given, messages name ids beside rows.
        meta: Provenance to store; ``pred_probs_source``, ``pred_probs_columns``,
            ``classes_source`` and ``embeddings_source`` are also used in
            messages.
        task: ``"multiclass"`` (probability rows sum to 1) or ``"multilabel"``
            (labels are sets, stored as an N x K bool matrix; probabilities are
            independent per class, each in [0, 1]).
        embeddings: Optional N x D feature embeddings: finite, no all-zero
            row; stored as C-contiguous float32 (not copied if already so).
        combine_models: How several models' probabilities combine into
            ``pred_probs`` (see :mod:`labelqa.models`): ``log_linear``
            (default), ``geometric``, ``mean`` or ``loss_weighted``.
        model_names: Source names of the models when ``pred_probs`` is a list
            of matrices (``"column a"``, ``"file p.npy"``; default
            ``pred_probs[0]``, ``pred_probs[1]``...), for messages and
            ``meta["models"]``.
        trust_class_order: Multiclass: skip the check that the labels do
            not fit another order of the probability columns far better
            (:mod:`labelqa.data.class_order`).
        prob_facts: :class:`~labelqa.data.probabilities.RowFacts` of a
            single ``pred_probs`` matrix, gathered while it was read (used
            only when they describe it; else one pass gathers them).

    ``pred_probs`` may be a list of N x K matrices, one per model: each is
    validated like a single matrix (messages name its source), all must
    share N and K, and ``pred_probs`` becomes their combination while
    ``model_pred_probs`` keeps each (``meta["models"]``,
    ``meta["combine_models"]``). A list of one matrix is a single model.

    Raises:
        LabelqaError: On any invalid input; the message names the column and
            the first offending rows, the hint says how to fix it.
    """
    if task not in TASKS:
        raise LabelqaError(f"unknown task {task!r}", hint="use 'multiclass' or 'multilabel'")
    multilabel = task == "multilabel"
    meta = dict(meta or {})
    meta.setdefault("input_format", "arrays")
    meta.setdefault("pred_probs_source", "array")
    if embeddings is not None:
        meta.setdefault("embeddings_source", "array")
    given_classes = classes is not None
    if given_classes:
        meta.setdefault("classes_source", "classes argument")
    where = Where(source, label_col, id_col, meta)

    if multilabel and renormalize:
        raise LabelqaError(
            "--renormalize does not apply to multi-label data: its probabilities are independent per class "
            "and rows need not sum to 1",
            hint="drop --renormalize (renormalize=True)",
        )
    from labelqa.models import COMBINE_METHODS, check_same_shape, split_models

    if combine_models not in COMBINE_METHODS:
        raise LabelqaError(f"unknown model combination {combine_models!r}",
                           hint=f"use --combine-models {', '.join(COMBINE_METHODS)}")
    models = split_models(pred_probs) if not isinstance(pred_probs, np.ndarray) else None
    if models is not None and model_names is not None and len(model_names) != len(models):
        raise LabelqaError(f"{len(model_names)} model names for {len(models)} models", hint="give one name per model")
    model_wheres: list[Where] = []
    model_mats: list[np.ndarray] = []
    if models is not None and len(models) == 1:
        if model_names is not None and meta.get("pred_probs_source") == "array":
            meta["pred_probs_source"] = model_names[0]
            where = Where(source, label_col, id_col, meta)
        pred_probs, models = models[0], None
    if models is not None:
        names = list(model_names) if model_names is not None else [f"pred_probs[{i}]" for i in range(len(models))]
        if len(set(names)) != len(names):
            dup = sorted({x for x in names if names.count(x) > 1})
            raise LabelqaError(f"model {', '.join(dup)} given more than once",
                               hint="give each probability column or file once")
        for m, name in zip(models, names):
            w = Where(source, label_col, id_col, {**meta, "pred_probs_source": name, "pred_probs_columns": None})
            model_wheres.append(w)
            model_mats.append(as_prob_matrix(m, w.probs))
        check_same_shape(model_mats, [w.probs for w in model_wheres])
        meta["pred_probs_source"] = f"{combine_models} of {len(models)} models"
        meta["models"] = names
        meta["combine_models"] = combine_models
        where = Where(source, label_col, id_col, meta)
        P = model_mats[0]
    else:
        P = as_prob_matrix(pred_probs, where.probs)
    n, k = P.shape
    if n == 0:
        raise LabelqaError(f"{source or 'input'}: no rows", hint="the input has no data rows; check the file and filters")
    check_min_classes(k, multilabel, where.probs)
    if not multilabel:
        check_classes_fit(k, where.probs)

    if not multilabel and is_label_matrix(labels) and np.shape(labels)[1] == k:
        raise LabelqaError(
            f"{where.labels}: labels of shape {tuple(np.shape(labels))} form a label matrix, which is multi-label data",
            hint="pass task='multilabel' (--task multilabel) for label sets, or one label per row for multiclass",
        )
    if multilabel and is_label_matrix(labels):
        ids_np = convert_ids(ids, n, where.ids, id_col)
        rows = Rows(ids_np, id_col if ids is not None else None)
        Y = label_matrix(labels, n, k, where, rows)
        if given_classes:
            cls = tuple(normalize_classes(classes))
            check_class_count(cls, k, meta["classes_source"], where.probs)
        else:
            cls = tuple(range(k))
            meta["classes_source"] = f"label matrix columns 0..{k - 1}"
        meta["label_format"] = "label matrix"
    elif multilabel:
        label_arr = label_sets_to_arrow(labels, where.labels)
        if len(label_arr) != n:
            raise LabelqaError(
                f"{source or 'input'}: {len(label_arr)} label sets but {n} rows of predicted probabilities",
                hint="labels and probabilities must describe the same rows in the same order",
            )
        ids_np = convert_ids(ids, n, where.ids, id_col)
        rows = Rows(ids_np, id_col if ids is not None else None)
        items, parent = label_set_items(label_arr, where.labels, rows)
        cls = _resolve_classes(classes, items, k, meta, where)
        codes, as_codes = encode_label_items(items, parent, cls, where, rows)
        if as_codes:
            meta["labels_are_codes"] = True
        Y = scatter_label_sets(codes, parent, n, cls, where, rows)
        meta.setdefault("label_format", "label lists")
    else:
        label_arr = to_arrow_1d(labels, "labels")
        if len(label_arr) != n:
            raise LabelqaError(
                f"{source or 'input'}: {len(label_arr)} labels but {n} rows of predicted probabilities",
                hint="labels and probabilities must describe the same rows in the same order",
            )
        if is_list_type(label_arr.type):
            raise LabelqaError(
                f"{where.labels}: each row holds a list of labels ({type_name(label_arr.type)}), which is multi-label data",
                hint="pass --task multilabel (task='multilabel') or leave the task on auto for label sets, "
                "or give one label per row for multiclass",
            )
        ids_np = convert_ids(ids, n, where.ids, id_col)
        rows = Rows(ids_np, id_col if ids is not None else None)
        label_arr = normalize_labels(label_arr, where.labels, rows)
        cls = _resolve_classes(classes, label_arr, k, meta, where)
        codes, as_codes = encode_labels(label_arr, cls, where, rows)
        if as_codes:
            meta["labels_are_codes"] = True
        Y = codes

    model_tuple: tuple[np.ndarray, ...] | None = None
    if model_mats:
        P, model_tuple = _check_and_combine(model_mats, model_wheres, Y, rows, meta, renormalize=renormalize,
                                            multilabel=multilabel, method=combine_models)
    elif multilabel:
        meta.update(check_multilabel_probabilities(P, where=where, rows=rows))
    else:
        if prob_facts is None or not prob_facts.describes(P):  # one pass for both checks
            prob_facts = RowFacts.of(P, top=not trust_class_order)
        checked, prob_meta = check_probabilities(P, renormalize=renormalize, where=where, rows=rows,
                                                 facts=prob_facts)
        if checked is not P:  # renormalized: its top classes are not read from the given rows
            prob_facts = None
        P = checked
        meta.update(prob_meta)
    if not multilabel and not trust_class_order:
        check_class_order(Y, P, cls, classes_source=meta.get("classes_source"), probs_where=where.probs,
                          top=None if prob_facts is None else prob_facts.top)

    E = None if embeddings is None else check_embeddings(embeddings, n, where, rows)

    probs = _readonly(P)
    top = None if prob_facts is None or prob_facts.top is None else _readonly(prob_facts.top)
    return dict(
        labels=_readonly(Y),
        pred_probs=probs,
        known_top=None if top is None else (probs, top),
        classes=tuple(cls),
        ids=_readonly(ids_np),
        task=task,  # type: ignore[arg-type]
        embeddings=None if E is None else _readonly(E),
        source=source,
        label_col=label_col,
        id_col=id_col,
        meta=meta,
        model_pred_probs=model_tuple,
    )


def _check_and_combine(
    mats: list[np.ndarray], wheres: list[Where], Y: np.ndarray, rows: Rows, meta: dict[str, Any], *,
    renormalize: bool, multilabel: bool, method: str,
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Validate each model like a single matrix, then combine them (one new N x K array).

    Multiclass: also each model's own error count and the count floor of the
    combination's flags, the count of the model with the lowest log loss
    (``meta["model_num_issues"]``, ``meta["num_issues_floor"]``;
    :func:`labelqa.models.num_issues_floor`).
    """
    from labelqa.detectors.confident import NUM_ISSUES_FLOOR_META
    from labelqa.models import (
        combine_pred_probs,
        fit_log_linear_weights,
        fit_model_weights,
        in_sample_check,
        log_linear_pool,
        member_num_issues,
        num_issues_floor,
    )

    checked = []
    renormalized_rows = []
    for i, (m, w) in enumerate(zip(mats, wheres)):
        if multilabel:
            check_multilabel_probabilities(m, where=w, rows=rows)
            checked.append(m)
        else:
            m2, prob_meta = check_probabilities(m, renormalize=renormalize, where=w, rows=rows)
            checked.append(m2)
            renormalized_rows.append(prob_meta.get("renormalized_rows", 0))
            meta["sum_tolerance"] = max(meta.get("sum_tolerance", 0.0), prob_meta["sum_tolerance"])
    meta["renormalized"] = bool(renormalize and not multilabel)
    if meta["renormalized"]:
        meta["renormalized_rows"] = int(max(renormalized_rows))
        meta["model_renormalized_rows"] = [int(r) for r in renormalized_rows]
    task = "multilabel" if multilabel else "multiclass"
    check = None if multilabel else in_sample_check(checked, Y)  # once: the fits and the count floor read it
    suspect = None if check is None else check["suspect"]
    weights = None
    if method == "loss_weighted":
        weights = fit_model_weights(checked, Y, task=task, suspect=suspect)
        combined = combine_pred_probs(checked, "mean", weights, task=task)
    elif method == "log_linear":
        weights = fit_log_linear_weights(checked, Y, task=task, suspect=suspect)
        combined = log_linear_pool(checked, weights, task=task)
    else:
        combined = combine_pred_probs(checked, method, task=task)
    if weights is not None:
        meta["model_weights"] = [float(x) for x in weights]
    if check is not None:
        counts = member_num_issues(checked, Y)
        meta["model_num_issues"] = counts
        meta[NUM_ISSUES_FLOOR_META] = num_issues_floor(counts, check["mean_log_loss"], weights, check["suspect"])
    return combined, tuple(_readonly(m) for m in checked)


def _resolve_classes(classes: Any, values: pa.Array, k: int, meta: dict[str, Any], where: Where) -> tuple[Any, ...]:
    """Given classes in the labels' type (checked against K), or inferred from the label values."""
    if classes is not None:
        return given_classes_like(classes, values.type, k, meta["classes_source"], where.probs)
    cls, how = infer_classes(values, k)
    meta["classes_source"] = how
    return cls


def _readonly(arr: np.ndarray) -> np.ndarray:
    """A read-only view, so LabelData arrays are not mutated by accident."""
    view = arr.view()
    view.flags.writeable = False
    return view
