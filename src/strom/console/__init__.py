"""The broker's HTTP side: Prometheus metrics and health checks (the web console comes later)."""
