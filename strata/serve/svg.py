"""The page's diagram: strata's own layout (`backends/diagram/layout.describe`,
every repeat instance present) drawn as SVG, folded and unfolded per click.

What is open is the page's choice, sent as the set of cluster keys (IR paths)
the user toggled, so a fold survives an edit of the spec:

    repeat     folded by default: one frame "h: layer × 12" holding one instance's
               boxes (one per variant when layers differ), as `strata diagram`
               folds it; toggled: one box per layer (h.0 … h.11), each of which
               opens on a click
    stack, block, instance (of an unfolded repeat: closed by default)
               open: a frame of its boxes; closed: one box with its totals

Boxes are stacked top to bottom in the layout's (topological) order and
centred in their frame; an arrow between neighbours is a straight line, any
other (a residual skip, a tie) bends out to the right.  Every box carries
`data-key` (its IR path) for hover and jump-to-line; every frame title and
closed box that toggles carries `data-toggle`.

    >>> from strata.compiler import build_file
    >>> svg = draw(build_file("specs/gpt2.arch"), set())
    >>> "h: layer × 12" in svg.text, svg.text.count('data-key="decoder.h.0.attn"')
    (True, 1)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from html import escape

import networkx as nx

from strata.backends.diagram.fold import Fold
from strata.backends.diagram.layout import PALETTE, Layout, describe
from strata.compiler import ir
from strata.compiler.summary import index_ranges

_DRAWINGS = itertools.count()  # marker ids unique per drawing: a page shows several SVGs at once,
                               # and url(#id) resolves to the first in the document (maybe a hidden one)
LINE, PAD, GAP, CHAR = 15, 12, 22, 6.6   # px: a text line, frame padding, gap between items, a character
MIN_BOX = 120


@dataclass
class Item:
    id: str
    key: str
    lines: list[str]
    kind: str                       # palette kind, or "frame"
    toggle: str | None = None       # the cluster key a click toggles
    children: list["Item"] = field(default_factory=list)
    shape: str = "box"
    x: float = 0
    y: float = 0
    w: float = 0
    h: float = 0

    @property
    def frame(self) -> bool:
        return self.kind == "frame"


@dataclass
class Drawing:
    text: str                       # the SVG
    keys: list[str]                 # the IR paths of the boxes drawn (hover looks them up)
    width: float
    height: float


def draw(g: nx.MultiDiGraph, toggled: set[str], level: str = "block", groups: list[dict] | None = None,
         layouts: dict | None = None) -> Drawing:
    """`groups` (`ir.repeat_groups(g)`) and `layouts` (a dict the caller keeps, filled
    here with `describe(g, level, unfold=...)`): they do not change with the folds.
    Until a repeat is opened the folded layout is enough (39 ms against the unfolded
    one's 61 ms for Llama 2 70B's 80 layers)."""
    groups = ir.repeat_groups(g) if groups is None else groups
    layouts = {} if layouts is None else layouts
    unfold = any(r["path"] in toggled for r in groups)
    if unfold not in layouts:
        layouts[unfold] = describe(g, level, unfold=unfold, groups=groups)
    return _Drawer(g, layouts[unfold], toggled, groups, folded=not unfold).run()


class _Drawer:
    def __init__(self, g: nx.MultiDiGraph, layout: Layout, toggled: set[str], groups: list[dict],
                 folded: bool):
        self.layout, self.toggled, self.folded = layout, toggled, folded
        self.fold = Fold(g, unfold=False, groups=groups)
        self.tree = layout.tree()
        self.cluster = {c.id: c for c in layout.clusters}
        self.box_of_key = {b.key: b.id for b in layout.boxes}
        self.first: dict[str, int] = {}        # cluster id -> index of its first box
        for b in layout.boxes:
            i, c = int(b.id[1:]), b.cluster
            while c is not None and self.first.get(c, 1 << 60) > i:
                self.first[c] = i
                c = self.cluster[c].parent
        self.visible: dict[str, str] = {}      # layout box id -> item id drawn for it
        self.hidden: list[str] = []            # boxes of folded-away instances
        self.leaves: list[Item] = []           # drawn boxes, top to bottom

    # ---------------------------------------------------------------- what is drawn
    def run(self) -> Drawing:
        top = Item("top", "", [self.layout.title], "frame", children=self._contents(None))
        key = {b.id: b.key for b in self.layout.boxes}
        for bid in self.hidden:  # a folded layer's box stands for the same box of the drawn layer
            rep = self.box_of_key.get(self.fold(key[bid]))
            if rep in self.visible:
                self.visible[bid] = self.visible[rep]
        self._measure(top)
        self._place(top, 0, 0)
        return self._svg(top)

    def _contents(self, cid: str | None) -> list[Item]:
        clusters, boxes = self.tree.get(cid, ([], []))
        order = sorted([(self.first.get(c.id, 1 << 60), "c", c) for c in clusters]
                       + [(int(b.id[1:]), "b", b) for b in boxes], key=lambda t: t[0])
        out: list[Item] = []
        for _, what, x in order:
            if what == "b":
                item = Item(x.id, x.key, x.lines, x.kind, shape=x.shape)
                self.visible[x.id] = item.id
                self.leaves.append(item)
                out.append(item)
            elif x.kind == "repeat":
                out.append(self._repeat(x))
            else:
                closed_default = x.kind == "instance"
                closed = closed_default != (x.key in self.toggled)
                out.append(self._closed(x) if closed else
                           Item(x.id, x.key, x.lines, "frame", x.key, self._contents(x.id)))
        return out

    def _closed(self, c, lines: list[str] | None = None) -> Item:
        """A cluster drawn as one box; every box inside it points there."""
        item = Item(c.id, c.key, lines or c.lines, "closed", c.key, shape="box")
        self.leaves.append(item)
        for b in self._boxes_under(c.id):
            self.visible[b] = item.id
        return item

    def _boxes_under(self, cid: str) -> list[str]:
        clusters, boxes = self.tree.get(cid, ([], []))
        return [b.id for b in boxes] + [b for c in clusters for b in self._boxes_under(c.id)]

    def _repeat(self, c) -> Item:
        instances = self.tree.get(c.id, ([], []))[0]
        if self.folded:  # the folded layout: one instance's boxes, or one cluster per variant
            if not instances:
                return Item(c.id, c.key, c.lines, "frame", c.key, self._contents(c.id))
            return Item(c.id, c.key, c.lines, "frame", c.key, [self._variant(i) for i in instances])
        if c.key in self.toggled:  # unfolded: every layer, each closed until clicked
            kids = []
            for inst in instances:
                if inst.key in self.toggled:
                    kids.append(Item(inst.id, inst.key, inst.lines, "frame", inst.key,
                                     self._contents(inst.id)))
                else:
                    kids.append(self._closed(inst, [inst.lines[0], self._block_of(c)]))
            return Item(c.id, c.key, c.lines, "frame", c.key, kids)
        reps = [i for i in instances if i.key in self.fold.members]
        for inst in instances:
            if inst.key not in self.fold.members:
                self.hidden.extend(self._boxes_under(inst.id))
        kids = self._contents(reps[0].id) if len(reps) == 1 else [self._variant(i) for i in reps]
        return Item(c.id, c.key, c.lines, "frame", c.key, kids)

    def _variant(self, inst) -> Item:
        """The drawn instance of layers that differ from the others: "[0,2,…,22] × 12"."""
        members = self.fold.members[inst.key]
        label = f"[{index_ranges([self.fold.index[m] for m in members])}] × {len(members)}"
        return Item(inst.id, inst.key, [label], "frame", None, self._contents(inst.id))

    def _block_of(self, c) -> str:
        return c.lines[0].split(": ", 1)[-1].split(" × ")[0]

    # ---------------------------------------------------------------- geometry
    def _measure(self, it: Item) -> None:
        text_w = max((len(s) for s in it.lines), default=0) * CHAR
        if not it.frame:
            it.w, it.h = max(MIN_BOX, text_w + 2 * PAD), LINE * len(it.lines) + 2 * PAD - 4
            if it.shape == "circle":
                it.w = it.h = 30
            return
        for k in it.children:
            self._measure(k)
        inner_w = max((k.w for k in it.children), default=0)
        it.w = max(inner_w, text_w) + 2 * PAD + (24 if any(k.frame for k in it.children) else 0)
        it.h = LINE * len(it.lines) + PAD * 2 + sum(k.h for k in it.children) \
            + GAP * max(len(it.children) - 1, 0) + PAD

    def _place(self, it: Item, x: float, y: float) -> None:
        it.x, it.y = x, y
        if not it.frame:
            return
        cy = y + LINE * len(it.lines) + PAD * 2
        for k in it.children:
            self._place(k, x + (it.w - k.w) / 2, cy)
            cy += k.h + GAP

    # ---------------------------------------------------------------- SVG text
    def _svg(self, top: Item) -> Drawing:
        frames: list[str] = []
        boxes: list[str] = []
        self._emit(top, frames, boxes, 0)
        self.marker = f"arrow{next(_DRAWINGS)}"
        arrows = self._arrows()
        right = max([top.w] + [a[1] for a in arrows]) + 20
        head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="diagram" width="{right:.0f}" '
                f'height="{top.h + 10:.0f}" viewBox="-5 -5 {right + 5:.0f} {top.h + 10:.0f}">'
                f'<defs><marker id="{self.marker}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
                'markerHeight="7" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#555"/>'
                '</marker></defs>')
        body = "".join(frames) + "".join(a[0] for a in arrows) + "".join(boxes)
        keys = [it.key for it in self.leaves]
        return Drawing(head + body + "</svg>", keys, right, top.h)

    def _emit(self, it: Item, frames: list[str], boxes: list[str], depth: int) -> None:
        if it.frame:
            tog = f' data-toggle="{escape(it.toggle)}"' if it.toggle else ""
            fill = "#f7f7fb" if depth % 2 else "#ffffff"
            frames.append(f'<g class="frame"{tog} data-key="{escape(it.key)}">'
                          f'<rect x="{it.x:.1f}" y="{it.y:.1f}" width="{it.w:.1f}" height="{it.h:.1f}" '
                          f'rx="8" fill="{fill}" stroke="#9aa" stroke-dasharray="4 3"/>')
            for i, line in enumerate(it.lines):
                cls = "title toggle" if (i == 0 and it.toggle) else "title"
                bold = ' font-weight="bold"' if i == 0 else ""
                frames.append(f'<text class="{cls}"{tog} x="{it.x + PAD:.1f}" '
                              f'y="{it.y + PAD + LINE * (i + 0.8):.1f}" font-size="{12 if i == 0 else 11}"'
                              f'{bold}>{escape(line)}</text>')
            frames.append("</g>")
            for k in it.children:
                self._emit(k, frames, boxes, depth + 1)
            return
        label, fill, stroke = PALETTE.get(it.kind, ("", "#eef2ff", "#6677aa"))
        tog = f' data-toggle="{escape(it.toggle)}"' if it.toggle else ""
        cls = "node toggle" if it.toggle else "node"
        cx = it.x + it.w / 2
        if it.shape == "circle":
            shape = f'<circle cx="{cx:.1f}" cy="{it.y + it.h / 2:.1f}" r="{it.w / 2:.1f}"'
        else:
            rx = it.h / 2 if it.shape == "stadium" else (10 if it.shape == "round" else 4)
            shape = (f'<rect x="{it.x:.1f}" y="{it.y:.1f}" width="{it.w:.1f}" height="{it.h:.1f}" '
                     f'rx="{rx}"')
        dash = ' stroke-dasharray="6 2" stroke-width="2"' if it.toggle else ""
        parts = [f'<g class="{cls}" data-key="{escape(it.key)}"{tog}>',
                 f'{shape} fill="{fill}" stroke="{stroke}"{dash}/>']
        for i, line in enumerate(it.lines):
            y = it.y + it.h / 2 + LINE * (i - (len(it.lines) - 1) / 2) + 4
            weight = ' font-weight="bold"' if i == 0 else ""
            parts.append(f'<text x="{cx:.1f}" y="{y:.1f}" text-anchor="middle" '
                         f'font-size="{12 if i == 0 else 10.5}"{weight}>{escape(line)}</text>')
        parts.append("</g>")
        boxes.append("".join(parts))

    def _arrows(self) -> list[tuple[str, float]]:
        items = {it.id: it for it in self.leaves}
        pos = {it.id: i for i, it in enumerate(self.leaves)}
        seen: set[tuple[str, str]] = set()
        out: list[tuple[str, float]] = []
        lane: dict[str, int] = {}
        # plain data arrows first: where two boxes are joined by a data and a skip
        # arrow (two closed layers), the straight line is the one drawn
        for a in sorted(self.layout.arrows, key=lambda a: a.role != "data"):
            s, d = self.visible.get(a.src), self.visible.get(a.dst)
            if s is None or d is None or s == d or (s, d) in seen or pos[d] < pos[s]:
                continue  # inside one box, or a folded repeat's layer-to-layer loop
            seen.add((s, d))
            A, B = items[s], items[d]
            style = {"residual": ' stroke-dasharray="5 3"', "tied": ' stroke-dasharray="2 3"',
                     "memory": ' stroke-width="2.5"'}.get(a.role, "")
            if pos[d] == pos[s] + 1 and a.role == "data":
                x1, y1, x2, y2 = A.x + A.w / 2, A.y + A.h, B.x + B.w / 2, B.y
                out.append((f'<path class="arrow" d="M{x1:.1f},{y1:.1f}L{x2:.1f},{y2:.1f}" '
                            f'stroke="#555" fill="none" marker-end="url(#{self.marker})"{style}/>', 0))
                continue
            n = lane[s] = lane.get(s, 0) + 1
            bend = max(A.x + A.w, B.x + B.w) + 30 + 12 * n
            y1, y2 = A.y + A.h / 2, B.y + B.h / 2
            out.append((f'<path class="arrow {a.role}" d="M{A.x + A.w:.1f},{y1:.1f}C{bend:.1f},{y1:.1f} '
                        f'{bend:.1f},{y2:.1f} {B.x + B.w:.1f},{y2:.1f}" stroke="#777" fill="none" '
                        f'marker-end="url(#{self.marker})"{style}/>', bend))
        return out
