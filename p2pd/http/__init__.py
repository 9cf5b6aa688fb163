"""The local HTTP listeners: Prometheus metrics (``-metricsAddr``), and the status page
with a read-only, trustless IPFS gateway (``[http] listen``, ``-httpAddr``)."""
