"""Every error this package raises, drawn once::

    CanaryError
    ├── SpecError             bad release spec or run conf; retrying cannot fix it
    ├── RouterError           the traffic API failed; a retry may help
    │   ├── WeightNotApplied  the read-back weight differs from what was set
    │   └── RouterRefused     the router refuses the change for good (a Rollout someone aborted); not retried
    ├── MetricsError          the metrics backend rejected the query (bad query, auth); not retried
    │   └── BackendUnavailable  backend down, timed out or 5xx; hold and retry
    └── HookError             a deploy/promote/rollback hook (command or webhook) failed
        └── HookRefused       the hook's backend refuses for good (denied, not found, invalid); not retried

"No data yet" is not an exception: a provider returns ``None`` values and the judge holds.
"""

from __future__ import annotations


class CanaryError(Exception):
    """Base of every error raised by canary_operators."""


class SpecError(CanaryError, ValueError):
    """A release spec or a run's conf is invalid. The message names the file (or conf) and field."""


class RouterError(CanaryError):
    """The traffic router's API failed."""


class WeightNotApplied(RouterError):
    """The router reports a different canary weight than the one just set."""


class RouterRefused(RouterError):
    """The router refuses the change in a way retrying cannot fix (an Argo Rollout someone aborted)."""


class MetricsError(CanaryError):
    """The metrics backend refused the request in a way retrying will not fix."""


class BackendUnavailable(MetricsError):
    """The metrics backend is unreachable, timed out or answered 5xx."""


class HookError(CanaryError):
    """A deploy, promote or rollback hook failed."""


class HookRefused(HookError):
    """The hook's backend refuses the call in a way retrying cannot fix (denied, not found, invalid)."""
