"""Answers, one module per dialect, from a `function.signature.Prediction`.

An encoder module offers `encode(prediction, batch, signature) -> body` (a JSON-ready value)
and `answer_schema(signature)` / `answer_examples(signature)` for the OpenAPI document.
"""
