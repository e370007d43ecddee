"""The registry of target types, the spec's notify: list, and the safety failure hook."""

from __future__ import annotations

import pytest

from canary_operators.exceptions import SpecError
from canary_operators.notify import NOTIFIERS, event_of_outcome, notifier_module, report_url
from canary_operators.spec import parse_spec
from canary_operators.spec.notify import NOTIFY_EVENTS, NotifyTarget

BASE = {"name": "checkout", "router": {"type": "haproxy", "conn_id": "c", "settings": {"backend": "w"}},
        "metrics": {"type": "prometheus", "conn_id": "p"}, "promote": {"type": "command", "command": ["true"]}}


def test_every_spec_type_has_a_notifier_and_an_unknown_one_lists_the_valid_types():
    import typing

    union = typing.get_args(NotifyTarget)[0]
    spec_types = {model.model_fields["type"].annotation.__args__[0] for model in typing.get_args(union)}
    assert spec_types == set(NOTIFIERS)
    with pytest.raises(SpecError, match="unknown notification target type 'pager'; valid types: email, slack, webhook"):
        notifier_module("pager")


@pytest.mark.parametrize("notify, message", [
    ([{"type": "slack", "conn_id": "s", "events": ["rollback", "rolback"]}],
     "web.yaml: notify[0].events[1]=rolback: Input should be 'started', 'step', 'rollback'"),
    ([{"type": "pager", "conn_id": "x"}], "web.yaml: notify[0]: Input tag 'pager'"),
    ([{"type": "email", "conn_id": "m"}], "web.yaml: notify[0].to: Field required"),
    ([{"type": "slack", "conn_id": ""}], "web.yaml: notify[0].conn_id"),
    ([{"type": "webhook", "conn_id": "h", "endpoint": "pager"}], "web.yaml: notify[0].endpoint"),
    ([{"type": "slack", "conn_id": "s", "events": []}], "web.yaml: notify[0].events"),
])
def test_a_bad_notify_entry_names_the_file_and_the_field(notify, message):
    with pytest.raises(SpecError) as e:
        parse_spec({**BASE, "notify": notify}, "web.yaml")
    assert message in str(e.value)


def test_a_valid_notify_list_defaults_to_the_events_that_need_a_person():
    spec = parse_spec({**BASE, "notify": [{"type": "slack", "conn_id": "s"}]}, "web.yaml")
    assert spec.notify[0].events == ["rollback", "promoted", "approval_needed", "traffic_not_restored"]
    assert set(NOTIFY_EVENTS) == {"started", "step", "rollback", "promoted", "approval_needed", "traffic_not_restored"}


def test_the_report_link_is_part_bs_url_with_the_ids_quoted():
    assert report_url("canary_web", "manual__2026-11-30T10:00:00+00:00", "http://af:8080") == \
        "http://af:8080/canary-releases/runs/canary_web/manual__2026-11-30T10%3A00%3A00%2B00%3A00"


def test_an_outcome_line_maps_to_its_event():
    assert event_of_outcome("PROMOTED v2 in 3m00s") == "promoted"
    assert event_of_outcome("ROLLED BACK v3 at 5% after 35 s: errors …") == "rollback"
    assert event_of_outcome("ABORTED (tooling): preflight: …") == "rollback"
    assert event_of_outcome("NOTHING TO RELEASE: v1 is already stable") is None


def test_the_safety_failure_hook_calls_the_notifications(monkeypatch):
    from canary_operators import notify, safety

    calls = []
    monkeypatch.setattr(notify, "notify_traffic_not_restored", lambda release, message: calls.append((release, message)))
    safety.report_unsafe("checkout", 5, "the router is down")
    assert calls == [("checkout", "TRAFFIC NOT RESTORED: checkout: the canary is still at 5% of traffic: the router is down")]
