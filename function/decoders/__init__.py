"""Request bodies, one module per dialect, into a `function.signature.Batch`.

A decoder module offers `decode(payload, signature, max_rows, **context) -> Batch`, raising a
`ServiceError` that names what was expected and what came, and `request_schema(signature,
max_rows)` / `request_examples(signature)` for the OpenAPI document. Values are checked by
`Feature.accept`, so every dialect refuses a value with the same words.
"""
