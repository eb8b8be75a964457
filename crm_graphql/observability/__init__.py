"""What operators see of a running server (docs/decisions/0025): the request id of every
request in its log lines and spans (``requests``), Prometheus metrics at ``/metrics``
(``metrics``) and OpenTelemetry traces exported over OTLP (``tracing``)."""
