"""Training entry points the job's tests run (`TRAIN_ENTRYPOINT=tests.job_entrypoints:<name>`):
small real models on iris's splits, each a different kind of candidate."""

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from training.train import CLASS_NAMES, FEATURE_NAMES, _splits, iris

# Strongly regularised: 11 of the 15 held-out rows right, where the seed's model has all 15.
WEAK_C = 0.01


def weak_iris():
    _, sample, holdout_X, holdout_y = iris()
    splits = _splits()
    names = np.asarray(CLASS_NAMES, dtype=object)
    model = LogisticRegression(C=WEAK_C, random_state=0)
    model.fit(pd.DataFrame(splits.X_train, columns=list(FEATURE_NAMES)), names[splits.y_train])
    return model, sample, holdout_X, holdout_y


def three_feature_iris():
    """The seed's model without `petal_width`: a model of other features."""
    _, sample, holdout_X, holdout_y = iris()
    splits = _splits()
    names = np.asarray(CLASS_NAMES, dtype=object)
    columns = list(FEATURE_NAMES[:3])
    model = LogisticRegression(random_state=0)
    model.fit(pd.DataFrame(splits.X_train[:, :3], columns=columns), names[splits.y_train])
    return model, sample[columns], holdout_X[columns], holdout_y


def raises():
    rows = []
    if not rows:
        raise ValueError("no training rows in the data")
    return rows


def not_a_tuple():
    model, *_ = iris()
    return model


def labels_short():
    """Fewer labels than held-out rows."""
    model, sample, holdout_X, holdout_y = iris()
    return model, sample, holdout_X, holdout_y[:-1]
