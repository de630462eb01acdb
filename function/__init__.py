"""Serve a scikit-learn model, exported to ONNX, as a Functions Framework function.

`main.py` at the repository root wires `create_predict` to the `predict` target; everything
heavy (onnxruntime, the Cloud Storage client, the model itself) waits for the first request
that needs it.
"""
