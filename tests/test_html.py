"""Tests of the claim-level report: the claim registry, the claim table heading report.md and
index.html, figure captions, and the HTML parsed (every image present, every anchor resolving,
the claim table complete), plus a headless Chromium screenshot where Debian's chromium is
installed."""
from __future__ import annotations

import base64
import re
import shutil
import struct
import subprocess
from dataclasses import replace
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest

import volbench
from volbench.claims.registry import CLAIM_IDS, CLAIMS, PAPERS
from volbench.report.claimtable import claim_rows
from volbench.report.example import example_run
from volbench.report.render import render_run
from volbench.results import CaseResult, RunReport, Statement, Statistic

REPO = Path(volbench.__file__).resolve().parents[1]
CLAIMS_MD = REPO.parent / "shared" / "CLAIMS.md"


# --------------------------------------------------------------------------- registry


def test_registry_covers_every_claim_of_claims_md():
    assert len(CLAIM_IDS) == 35 and set(CLAIMS) == set(CLAIM_IDS)
    if CLAIMS_MD.is_file():
        ids = re.findall(r"^\| ([FSZE][0-9]+) \|", CLAIMS_MD.read_text(encoding="utf-8"), flags=re.M)
        assert sorted(ids) == sorted(CLAIM_IDS)
    for claim_id, info in CLAIMS.items():
        assert info.id == claim_id and info.paper in PAPERS
        assert info.statement.strip() and info.source.strip() and info.predicts.strip()
        assert info.statement.count('"') % 2 == 0, f"{claim_id}: unbalanced quotes in the statement"


def test_registry_quotes_the_papers_numbers():
    assert "-0.1835" in CLAIMS["F5"].number and "-0.0853" in CLAIMS["F5"].number
    assert "-0.3747" in CLAIMS["F5"].number and "-0.2647" in CLAIMS["F5"].number
    assert "-0.1892" in CLAIMS["E2"].number and "-0.3301" in CLAIMS["E2"].number
    assert "0.1 for H" in CLAIMS["S5"].number and "2/(n+2)" in CLAIMS["S9"].statement
    assert "10^8" in CLAIMS["Z4"].number and "epoch 140" in CLAIMS["Z6"].number


def test_quoted_statements_are_verbatim_in_the_papers():
    """Text in double quotes must appear in the paper's text (whitespace and line breaks aside)."""
    papers = {"fan": "fan-sharp-minima-can-generalize.txt",
              "scherlis": "scherlis-belrose-estimating-probability-of-sampling.txt",
              "zhang": "zhang-why-flatness-correlates-with-generalization.txt"}
    folder = REPO.parent / "shared" / "papers"
    if not folder.is_dir():
        pytest.skip(f"the papers are not at {folder}")

    def norm(text: str) -> str:
        text = re.sub(r"\$[^$]*\$", "", text)  # the markdown papers spell symbols in LaTeX
        return re.sub(r"[^a-z0-9]+", "", text.lower())

    texts = {key: norm((folder / name).read_text(encoding="utf-8")) for key, name in papers.items()}
    checked = 0
    for info in CLAIMS.values():
        if info.paper not in texts:
            continue
        for quote in re.findall(r'"([^"]{20,})"', info.statement):
            for piece in quote.split("..."):
                piece = re.sub(r"\((red triangle)\)", r"(\1)", piece)
                if len(norm(piece)) < 15 or any(sym in piece for sym in ("∝", "≥", "θ", "ᵀ", "‖", "²")):
                    continue
                assert norm(piece) in texts[info.paper], f"{info.id}: not verbatim in {info.paper}: {piece!r}"
                checked += 1
    assert checked >= 25


# --------------------------------------------------------------------------- HTML parsing


class Page(HTMLParser):
    """ids, in-page links, images (src, alt), figcaptions, the claim table's rows and details."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.hrefs: list[str] = []
        self.images: list[dict[str, str]] = []
        self.captions: list[str] = []
        self.claim_rows: list[str] = []
        self.details = 0
        self._caption: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            assert a["id"] not in self.ids, f"duplicate id {a['id']}"
            self.ids.add(a["id"])
        if tag == "a" and "href" in a:
            self.hrefs.append(a["href"])
        if tag == "img":
            self.images.append(a)
        if tag == "figcaption":
            self._caption = []
        if tag == "tr" and "claim-row" in a.get("class", ""):
            self.claim_rows.append(a["data-claim"])
        if tag == "details":
            self.details += 1

    def handle_data(self, data):
        if self._caption is not None:
            self._caption.append(data)

    def handle_endtag(self, tag):
        if tag == "figcaption" and self._caption is not None:
            self.captions.append("".join(self._caption).strip())
            self._caption = None


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def statement_run() -> RunReport:
    """The example run plus a claim judged by both estimators with statements, one where they
    disagree, a claim absent from the registry and a quick result."""
    run = example_run()
    stat = Statistic("log V difference", 120.0, low=40.0, high=200.0, level=0.95, unit="nats")
    extra = [
        CaseResult(claim="F2", case_id="F2-more-data-smaller[swiss-mlp]", estimator="reference", verdict="fail",
                   statistic=stat, rule="pass if the interval lies above 0", seconds=1.0,
                   statements=[Statement("a", "own-data minimum largest", "fail", stat,
                                         rule="pass if the interval lies above 0"),
                               Statement("b.max", "max radius below", "not-judged",
                                         reason="needs 500 directions (nightly)")]),
        CaseResult(claim="X1", case_id="X1-unregistered", estimator="principled", verdict="pass",
                   statistic=Statistic("n", 1.0), rule="pass", seconds=0.5, quick=True),
    ]
    return replace(run, results=run.results + tuple(extra))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    run = statement_run()
    out = tmp_path_factory.mktemp("html")
    paths = render_run(run, out)
    return run, out, paths


def test_html_every_image_present_every_anchor_resolves_claim_table_complete(rendered):
    run, out, paths = rendered
    html = paths.html.read_text(encoding="utf-8")
    page = Page()
    page.feed(html)
    # every image is an inlined, decodable PNG with alt text, and has a caption
    expected = sum(len({s["kind"] for s in r.series}) for r in run.results) + 1  # + timing
    assert len(page.images) == expected
    for img in page.images:
        assert img["src"].startswith("data:image/png;base64,") and img.get("alt")
        width, height = png_size(base64.b64decode(img["src"].split(",", 1)[1]))
        assert width > 100 and height > 100
    assert len(page.captions) == expected and all(len(c) > 60 for c in page.captions)
    # every in-page link resolves to an id on the page; nothing points outside
    internal = [h for h in page.hrefs if h.startswith("#")]
    dangling = sorted({h for h in internal if h[1:] not in page.ids})
    assert internal and not dangling, dangling
    assert all(h.startswith("#") for h in page.hrefs), "a self-contained report links nothing outside"
    # the claim table: one row per claim of the run, in natural order, each with its details
    claims = list(dict.fromkeys(r.claim for r in run.results))
    assert sorted(page.claim_rows) == sorted(claims) and len(page.claim_rows) == len(set(page.claim_rows))
    assert page.details == len(claims)
    assert html.index('id="claim-table"') < html.index('id="verdicts"'), "the claim table heads the report"
    for claim in claims:
        assert f"claim-{claim}" in page.ids
    # statements of every result appear on expansion and in the result's card
    for r in run.results:
        for st in r.statements:
            assert html.count(f"({st.id}) <span class=\"sv sv-{st.verdict}\">{st.verdict}</span>") >= 1
    # registry text and the not-run claims
    assert CLAIMS["F5"].title in html and "-0.1835" in html
    assert "(not in the claim registry)" in html and "Quick run" in html
    assert "Claims of CLAIMS.md not run here" in html and "Z6" in html


def test_claim_rows_agreement_and_verdicts():
    rows = {row.claim: row for row in claim_rows(statement_run())}
    assert rows["F5"].agreement == "agree"
    assert rows["F2"].agreement == "disagree", "principled pass vs reference fail"
    assert rows["F2"].estimators["reference"].verdict == "fail"
    assert rows["F1"].agreement == "one estimator"
    assert rows["Z4"].estimators["-"].verdict == "skip" and rows["Z4"].others[0].estimator == "-"
    assert rows["S5"].estimators["principled"].verdict == "error"
    assert [st.id for _, _, st in rows["F5"].statements] == ["a", "b.tau", "a", "b.tau"]
    assert rows["X1"].info is None and rows["X1"].quick


def test_markdown_claim_table_heads_the_report_and_its_links_resolve(rendered):
    run, out, paths = rendered
    md = paths.markdown.read_text(encoding="utf-8")
    assert md.index("## Claims") < md.index("## Verdicts")
    targets = set(re.findall(r'<a id="([^"]+)"></a>', md))
    links = re.findall(r"\]\(#([^)]+)\)", md)
    assert links and all(link in targets for link in links), [x for x in links if x not in targets]
    table = md.split("## Claims", 1)[1].split("<details>", 1)[0]
    claims = list(dict.fromkeys(r.claim for r in run.results))
    for claim in claims:
        assert f"| [{claim}](#claim-{claim}) |" in table
    assert md.count("<details>") == len(claims) == md.count("</details>")
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (out / link).is_file()
    assert md.count("\n*") >= len(re.findall(r"!\[", md)), "a caption line under every figure"


def test_figure_captions_say_what_the_claim_predicts(rendered):
    run, out, paths = rendered
    html = unescape(paths.html.read_text(encoding="utf-8"))
    assert f"F5 predicts: {CLAIMS['F5'].predicts}." in html
    assert f"F6 predicts: {CLAIMS['F6'].predicts}." in html
    assert "Compare hardware on computed seconds" in html


def test_case_cards_show_timing_computed_and_served(rendered):
    _, _, paths = rendered
    html = unescape(paths.html.read_text(encoding="utf-8"))
    assert "computed 8.82 s (measurements 6.86 s, 3,920 cost evaluations in 3 measurements; training 1.96 s" in html
    assert "served from caches: 1 measurement (had cost 2.45 s), 2 minima" in html


# --------------------------------------------------------------------------- Chromium


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium); "
                                             "the HTML is still checked by parsing")
def test_headless_chromium_renders_the_report(rendered, tmp_path):
    _, out, paths = rendered
    shot = tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           "--window-size=1280,2400", f"--screenshot={shot}", paths.html.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    width, height = png_size(shot.read_bytes())
    assert (width, height) == (1280, 2400)
    # the page drew something: a rendered report is not one flat colour
    dump = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", "--no-first-run",
                           f"--user-data-dir={tmp_path / 'profile2'}", "--dump-dom", paths.html.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert dump.returncode == 0 and 'id="claim-table"' in dump.stdout
    assert len(shot.read_bytes()) > 20_000
