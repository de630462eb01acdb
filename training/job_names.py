"""What the training job, its infrastructure and `make train-job` agree on, without importing
anything heavy: the job's name and where each task attempt leaves its summary."""

# The Cloud Run job, in the serving stack's REGION of PROJECT_ID.
JOB_NAME = "inference-train"
# Each task attempt writes its summary line, as JSON, to
# gs://$MODEL_BUCKET/jobs/<execution>/attempt-<n>.json: one new object per attempt, so the job
# needs only to create objects, and the caller tells a refusal (exit 3) from a failure.
SUMMARIES_PREFIX = "jobs/"
# Cloud Run sets these in every task of a job's execution.
EXECUTION_VARIABLE = "CLOUD_RUN_EXECUTION"
ATTEMPT_VARIABLE = "CLOUD_RUN_TASK_ATTEMPT"


def summary_object(execution: str, attempt: int) -> str:
    return f"{SUMMARIES_PREFIX}{execution}/attempt-{attempt}.json"
