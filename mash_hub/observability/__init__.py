"""What operators watch: Prometheus metrics (``metrics.py``) and structured logs (``logs.py``).

Neither ever carries personal data: metrics are counts and timings labelled by route
templates and codes; log lines are the hub's own fixed messages with a request id.
"""
