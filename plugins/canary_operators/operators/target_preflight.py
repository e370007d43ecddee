"""TargetPreflight: the preflight of one target of a release across several targets.

It is Preflight for the target's own spec, and first records the release's target names
(Variable ``canary_targets__<release>``), so that ``canary_guard`` finds every target's status
record even when the spec file breaks while the release runs: each record carries the spec its
target was released with.
"""

from __future__ import annotations

from canary_operators.operators.preflight import Preflight


def targets_variable(release: str) -> str:
    return f"canary_targets__{release}"


def recorded_targets(release: str) -> list[str]:
    """The target names the release's last run recorded (empty when none did)."""
    from airflow.sdk import Variable

    names = Variable.get(targets_variable(release), default=None, deserialize_json=True)
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


class TargetPreflight(Preflight):
    def __init__(self, *, target_names: list[str], **kwargs):
        super().__init__(**kwargs)
        self.target_names = target_names

    def run_step(self, context) -> dict:
        from airflow.sdk import Variable

        release = self.release.target_of or self.release.name
        if recorded_targets(release) != self.target_names:
            Variable.set(targets_variable(release), self.target_names, serialize_json=True,
                         description="Targets of a canary release (written by canary_operators; read by canary_guard)")
        return super().run_step(context)
