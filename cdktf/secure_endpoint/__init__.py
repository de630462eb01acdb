"""The secure inference endpoint as CDK for Terraform constructs.

Cloud Run behind a global external Application Load Balancer, guarded by Cloud Armor:
`stack.SecureEndpointStack` composes `serving.ServingBackend` and `edge.ArmoredEdge`.
"""
