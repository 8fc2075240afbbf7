"""What operators see: the Prometheus metrics, the health server, JSON logs, progress lines."""
