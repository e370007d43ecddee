"""The SVG plots: pure, drawn from literal values, every text escaped, every coordinate finite."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from canary_operators.report.svg import Band, Chart, Marker, Series, axis, format_value, render

NS = "{http://www.w3.org/2000/svg}"


def parsed(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # well-formed XML, or this raises


def numbers(svg: str) -> list[str]:
    """Every number in a coordinate attribute."""
    root = parsed(svg)
    found = []
    for el in root.iter():
        for name in ("x", "y", "x1", "x2", "y1", "y2", "cx", "cy", "points"):
            if name in el.attrib:
                found += re.split(r"[ ,]+", el.attrib[name].strip())
    return found


def test_lines_bands_and_markers_are_drawn():
    chart = Chart("gate_5 · errors", unit="percent",
                  series=(Series("canary", ((10, 0.0), (20, 0.03), (30, 0.04))), Series("baseline", ((10, 0.002), (20, 0.002)))),
                  bands=(Band("baseline rate", ((10, 0.001, 0.003), (20, 0.0015, 0.0025))),),
                  markers=(Marker(30, "errors fail at 30s"),))
    svg = render(chart)
    root = parsed(svg)
    assert len(root.findall(f"{NS}polyline")) == 2
    assert len(root.findall(f"{NS}polygon")) == 1
    assert [m.attrib["class"] for m in root.findall(f"{NS}line") if m.attrib.get("class") == "marker"] == ["marker"]
    assert "errors fail at 30s" in svg
    ticks = [t.text for t in root.findall(f"{NS}text") if t.text and t.text.endswith("%")]
    assert 3 <= len(ticks) <= 8, ticks  # the y axis reads in percent


def test_nothing_finite_is_no_data():
    for chart in (Chart("empty"), Chart("nones", series=(Series("canary", ((1, None), (2, float("nan")), (float("inf"), 3))),))):
        svg = render(chart)
        assert "no data" in svg and "<polyline" not in svg
        parsed(svg)


def test_huge_and_non_finite_values_keep_every_coordinate_finite():
    chart = Chart("huge", series=(Series("canary", ((0, 1e308), (1, -1e308), (2, float("inf")), (3, 5.0))),),
                  bands=(Band("b", ((0, -1e308, 1e308),)),), markers=(Marker(float("nan"), "never"),))
    svg = render(chart)
    values = numbers(svg)
    assert values and all(v not in ("inf", "-inf", "nan") and float(v) == float(v) and abs(float(v)) < 1e6 for v in values), values
    assert "never" not in svg  # a marker at NaN is left out


def test_one_point_and_flat_lines_still_have_a_scale():
    svg = render(Chart("flat", series=(Series("canary", ((5, 0.2),)),), bands=(Band("b", ((5, 0.1, 0.3),)),)))
    assert "<circle" in svg and "<polygon" in svg
    assert all(float(v) == float(v) for v in numbers(svg))


def test_text_is_escaped():
    evil = '<script>alert("x")</script> & "quotes"'
    svg = render(Chart(evil, series=(Series(evil, ((0, 1), (1, 2)), color='red" onload="x'),), markers=(Marker(1, evil),)))
    assert "<script>" not in svg and 'onload="x' not in svg
    root = parsed(svg)
    assert root.find(f"{NS}title").text == evil


def test_values_read_as_people_read_them():
    assert format_value("percent", 0.0323) == "3.23%"
    assert format_value("ms", 0.31) == "310 ms"
    assert format_value("weight", 25) == "25%"
    assert format_value("", None) == "-" and format_value("", float("inf")) == "-"


def test_axes_end_on_round_numbers():
    lo, hi, ticks = axis([0.0021, 0.0323])
    assert (lo, hi) == (0.0, 0.04) and ticks == [0.0, 0.01, 0.02, 0.03, 0.04]
    assert axis([0, 10])[2] == [0, 2.5, 5.0, 7.5, 10.0]
    assert axis([5, 5])[:2] == (4.5, 5.5)  # a flat line still gets a scale
    lo, hi, ticks = axis([-1e300, 1e300])
    assert all(abs(t) <= 1e300 for t in ticks) and len(ticks) <= 12


def test_tick_labels_never_read_alike():
    from canary_operators.report.svg import format_tick

    lo, hi, ticks = axis([0.0999, 0.1001])  # a share that barely moves
    labels = [format_tick("percent", t, ticks[1] - ticks[0]) for t in ticks]
    assert len(set(labels)) == len(labels), labels
    assert [format_tick("percent", t, 0.025) for t in (0.0, 0.025, 0.05)] == ["0.0%", "2.5%", "5.0%"]
    assert [format_tick("weight", t, 25) for t in (0, 25, 50)] == ["0%", "25%", "50%"]
    assert format_tick("ms", 0.25, 0.05) == "250 ms"
