"""Server-rendered charts: an import's IDs applied over time, an audience's size over time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dashboard import charts, sending
from dashboard.models import AudienceSnapshot
from tests.dashboard.helpers import after_load, import_file


def test_a_step_chart_draws_each_value_and_describes_itself():
    t0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    svg = charts.step_chart(
        [(t0, 0), (t0 + timedelta(seconds=5), 10_000), (t0 + timedelta(seconds=9), 25_000)],
        title="IDs <applied>",
    )
    assert svg.startswith("<svg") and 'role="img"' in svg
    assert "from 0 to 25k IDs" in svg and "IDs &lt;applied&gt;" in svg and "<applied>" not in svg
    assert svg.count("H") >= 2  # one step per change
    assert charts.step_chart([], title="nothing") == ""


def test_the_import_and_audience_pages_show_their_charts(marketer, connection, work):
    connection.client().create("vip")
    work()
    imp = import_file(marketer, connection, work, b"id\n1\n2\n3\n", mapping={"id_column": 0})
    sending.submit(imp)
    work()
    page = marketer.get(f"/imports/{imp.pk}/").content.decode()
    assert "IDs applied over time" in page and "<svg" in page
    assert AudienceSnapshot.objects.filter(audience="vip").latest("at").nb_ids == 3
    page = after_load(marketer, marketer.get(f"/audiences/{connection.pk}/vip/")).content.decode()
    assert "Size over time" in page and "from 3 to 3 IDs" in page
