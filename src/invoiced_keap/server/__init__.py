"""The long-running side: webhook receivers, dirty-id debounce, status page, /metrics and /healthz."""
