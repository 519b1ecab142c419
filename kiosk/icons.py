"""Drawn pictograms beside every heading and on the buttons, so a state is never told by colour alone.

Import only after ``kiosk.kivyconf.configure_kivy()`` (Kivy graphics).
"""

from __future__ import annotations

from typing import Any

from kivy.graphics import Color, Ellipse, Line, Rectangle, RoundedRectangle, Triangle
from kivy.properties import StringProperty
from kivy.uix.widget import Widget

from kiosk import theme
from kiosk.theme import rgba


class StateIcon(Widget):
    """A simple drawn pictogram, so a state never depends on colour alone (and needs no icon font)."""

    kind = StringProperty("")
    colour = StringProperty(theme.ICON)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bind(pos=self._redraw, size=self._redraw, kind=self._redraw, colour=self._redraw)

    def _redraw(self, *_: Any) -> None:
        self.canvas.clear()
        s = min(self.width, self.height)
        if s <= 0 or not self.kind:
            return
        x0, y0 = self.center_x - s / 2, self.center_y - s / 2
        w = max(2.0, s / 14)

        def p(fx: float, fy: float) -> tuple[float, float]:
            return x0 + fx * s, y0 + fy * s

        with self.canvas:
            Color(*rgba(self.colour))
            kind = self.kind
            if kind == "taxi":
                cx, cy, cw, ch = self.x, self.y, self.width, self.height
                RoundedRectangle(pos=(cx, cy + ch * 0.18), size=(cw, ch * 0.42), radius=[ch * 0.1])
                RoundedRectangle(pos=(cx + cw * 0.2, cy + ch * 0.5), size=(cw * 0.6, ch * 0.3), radius=[ch * 0.1])
                Rectangle(pos=(cx + cw * 0.4, cy + ch * 0.8), size=(cw * 0.2, ch * 0.14))
                for fx in (0.22, 0.78):
                    Ellipse(pos=(cx + cw * fx - ch * 0.14, cy), size=(ch * 0.28, ch * 0.28))
            elif kind == "hourglass":
                Triangle(points=[*p(0.2, 0.95), *p(0.8, 0.95), *p(0.5, 0.5)])
                Triangle(points=[*p(0.2, 0.05), *p(0.8, 0.05), *p(0.5, 0.5)])
                Line(points=[*p(0.12, 0.97), *p(0.88, 0.97)], width=w)
                Line(points=[*p(0.12, 0.03), *p(0.88, 0.03)], width=w)
            elif kind == "magnifier":
                Line(circle=(*p(0.42, 0.58), s * 0.3), width=w * 1.3)
                Line(points=[*p(0.63, 0.36), *p(0.92, 0.07)], width=w * 2)
            elif kind == "check":
                Line(circle=(*p(0.5, 0.5), s * 0.46), width=w)
                Line(points=[*p(0.25, 0.52), *p(0.43, 0.32), *p(0.76, 0.7)], width=w * 1.6, joint="round")
            elif kind == "cross":
                Line(circle=(*p(0.5, 0.5), s * 0.46), width=w)
                Line(points=[*p(0.3, 0.3), *p(0.7, 0.7)], width=w * 1.5)
                Line(points=[*p(0.3, 0.7), *p(0.7, 0.3)], width=w * 1.5)
            elif kind == "exclamation":
                Line(points=[*p(0.5, 0.96), *p(0.04, 0.08), *p(0.96, 0.08)], width=w, close=True, joint="round")
                Rectangle(pos=p(0.45, 0.36), size=(s * 0.1, s * 0.38))
                Ellipse(pos=p(0.44, 0.16), size=(s * 0.12, s * 0.12))
            elif kind == "phone":
                Line(rounded_rectangle=(*p(0.25, 0.02), s * 0.5, s * 0.96, s * 0.08), width=w)
                Rectangle(pos=p(0.32, 0.22), size=(s * 0.36, s * 0.62))
                Ellipse(pos=p(0.45, 0.06), size=(s * 0.1, s * 0.1))
            elif kind == "no_link":
                # the "not available" sign: a ring with a bar across
                Line(circle=(*p(0.5, 0.5), s * 0.44), width=w * 1.3)
                Line(points=[*p(0.2, 0.2), *p(0.8, 0.8)], width=w * 1.3)
            elif kind == "pin":
                Ellipse(pos=p(0.2, 0.35), size=(s * 0.6, s * 0.6))
                Triangle(points=[*p(0.24, 0.55), *p(0.76, 0.55), *p(0.5, 0.02)])
            elif kind == "clock":
                Line(circle=(*p(0.5, 0.5), s * 0.46), width=w)
                Line(points=[*p(0.5, 0.8), *p(0.5, 0.5), *p(0.72, 0.38)], width=w * 1.4, joint="round")
            elif kind == "person":
                Ellipse(pos=p(0.35, 0.62), size=(s * 0.3, s * 0.3))
                RoundedRectangle(pos=p(0.22, 0.04), size=(s * 0.56, s * 0.5), radius=[s * 0.2, s * 0.2, 0, 0])
            elif kind == "question":
                Line(circle=(*p(0.5, 0.5), s * 0.46), width=w)
                Line(
                    points=[
                        *p(0.36, 0.64),
                        *p(0.42, 0.74),
                        *p(0.58, 0.74),
                        *p(0.64, 0.64),
                        *p(0.5, 0.5),
                        *p(0.5, 0.38),
                    ],
                    width=w * 1.3,
                    joint="round",
                )
                Ellipse(pos=p(0.45, 0.2), size=(s * 0.1, s * 0.1))
            elif kind == "back":
                Line(points=[*p(0.85, 0.5), *p(0.15, 0.5)], width=w * 1.5)
                Line(points=[*p(0.45, 0.82), *p(0.15, 0.5), *p(0.45, 0.18)], width=w * 1.5, joint="round")
