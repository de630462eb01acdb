"""A worked example of the training job's entry point, for a model of your own:

    TRAIN_ENTRYPOINT=training.examples.churn:train CHURN_DATA_URI=gs://bucket/churn.csv \\
        MODEL_BUCKET=... python -m training.job

The function takes no arguments and returns `(estimator, sample, holdout_X, holdout_y)`. It reads
its training data wherever it likes: here a CSV in Cloud Storage, downloaded with
google-cloud-storage into memory (pandas reading `gs://` itself would need gcsfs). The model's name
is the module's, `churn`, unless MODEL_NAME says otherwise.

The CSV: a header row, then `plan` (basic, plus or pro), `tenure_months`, `monthly_charges`,
`support_calls` and `churned` (yes or no).
"""

import io
import os

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

DATA_VARIABLE = "CHURN_DATA_URI"
FEATURES = ["plan", "tenure_months", "monthly_charges", "support_calls"]
LABEL = "churned"
HOLDOUT_FRACTION = 0.25
RANDOM_STATE = 0  # the same data gives the same model, and so the same version


def read_csv(uri: str) -> pd.DataFrame:
    """A `gs://bucket/object` CSV, read into memory through google-cloud-storage."""
    from google.cloud import storage

    if not uri.startswith("gs://") or "/" not in uri[5:]:
        raise ValueError(f"{DATA_VARIABLE}: expected gs://bucket/object.csv, got {uri!r}")
    bucket, name = uri[5:].split("/", 1)
    data = storage.Client().bucket(bucket).blob(name).download_as_bytes()
    return pd.read_csv(io.BytesIO(data))


def train():
    uri = os.environ.get(DATA_VARIABLE, "")
    frame = read_csv(uri)
    missing = [column for column in [*FEATURES, LABEL] if column not in frame.columns]
    if missing:
        raise ValueError(f"{uri}: expected the columns {[*FEATURES, LABEL]}, missing {missing}")
    X, y = frame[FEATURES], frame[LABEL].astype(str)
    # Stratified, so the held-out rows keep the classes' proportions; the same seed every run.
    X_train, X_holdout, y_train, y_holdout = train_test_split(
        X, y, test_size=HOLDOUT_FRACTION, random_state=RANDOM_STATE, stratify=y
    )
    prepare = ColumnTransformer(
        [
            # Requests may only carry plans the model learned: the service refuses others.
            ("plan", OneHotEncoder(handle_unknown="error"), ["plan"]),
            ("numbers", StandardScaler(), ["tenure_months", "monthly_charges", "support_calls"]),
        ]
    )
    model = Pipeline([("prepare", prepare), ("classify", LogisticRegression(max_iter=1000))])
    model.fit(X_train, y_train)
    # The parity sample: the rows it was fitted on, every plan among them.
    return model, X_train, X_holdout, y_holdout.to_numpy()
