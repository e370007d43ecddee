"""One client per service the plugin talks to: HTTP APIs, AWS, Kubernetes; and one way to retry.

Auth, timeouts, retries, error classes and secret scrubbing live here once. Routers, metrics
providers and actions call these clients and add only what is specific to their service.
"""
