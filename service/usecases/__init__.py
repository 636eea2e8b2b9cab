"""Use cases: what each request asks of the model, the customer's state and the marketing definitions."""
