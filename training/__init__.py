"""Training and publishing the model the service serves."""
