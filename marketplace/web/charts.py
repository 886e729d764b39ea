"""Bar charts as SVG, drawn on the server: no chart library, no build step, readable without JavaScript.

A chart is data for ``templates/includes/bar_chart.html``: one bar per day, its
height scaled to the largest, each with a text equivalent (a tooltip and the table beside
it), between an axis of amounts (zero, half and the largest day) and an axis of days.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from marketplace.templatetags.market import readable_wei

WIDTH, HEIGHT, GAP = 600, 160, 2


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: str


@dataclass(frozen=True)
class BarChart:
    title: str
    summary: str
    bars: list[Bar]
    # the amounts axis, top to bottom, and the days axis, left to right
    amount_ticks: tuple[str, ...] = ()
    day_ticks: tuple[str, ...] = ()
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def empty(self) -> bool:
        return not any(b.height for b in self.bars)


def daily_wei_chart(*, title: str, days: int, totals: dict[str, int], today: date) -> BarChart:
    """``totals`` maps ISO dates to wei; the chart covers the ``days`` days up to ``today``."""
    dates = [today - timedelta(days=offset) for offset in range(days - 1, -1, -1)]
    values = [int(totals.get(d.isoformat(), 0)) for d in dates]
    top = max(values) or 1
    slot = WIDTH / days
    bars = [
        Bar(
            x=round(index * slot + GAP / 2, 2),
            y=round(HEIGHT - HEIGHT * value / top, 2),
            width=round(slot - GAP, 2),
            height=round(HEIGHT * value / top, 2),
            label=day.isoformat(),
            value=readable_wei(value),
        )
        for index, (day, value) in enumerate(zip(dates, values))
    ]
    total = sum(values)
    summary = f"{title}: {readable_wei(total)} in the last {days} days, at most {readable_wei(max(values))} in a day"
    amount_ticks = (readable_wei(top), readable_wei(top // 2), "0") if any(values) else ()
    day_ticks = tuple(_day(d) for d in (dates[0], dates[len(dates) // 2], dates[-1]))
    return BarChart(title=title, summary=summary, bars=bars, amount_ticks=amount_ticks, day_ticks=day_ticks)


def _day(day: date) -> str:
    return f"{day:%b} {day.day}"
