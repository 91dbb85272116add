"""Evaluate: run the evaluation protocol on the current gallery (or some of its individuals).

How well does Scute do on *this* gallery, with *these* settings? The protocol of ``core.evaluation.protocol``
holds back a quarter of the individuals as "new" and half of every other individual's photos as
queries, then reports accuracy, the novelty ROC, score histograms, and the slowest and wrongest
queries with their match pictures.
"""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from core.service import evaluation
from core.service.evaluation import EvaluationReport, protocol_split
from core.viz import charts
from ui import context as ctx
from ui.components import match_explorer, md, percent

REPORT = "evaluate.report"


def _run(rows: list) -> EvaluationReport | None:
    bar = st.progress(0.0, text="Starting…")
    stages = {"gallery": "Preparing the evaluation gallery", "queries": "Identifying the held-back photos"}

    def progress(stage: str, done: int, total: int) -> None:
        bar.progress(min(1.0, done / max(1, total)), text=f"{stages.get(stage, stage)}: {done} of {total}")

    report = None
    with ctx.guard("evaluating"):
        report = evaluation.run(ctx.app(), rows, progress)
        bar.progress(1.0, text="Done.")
    return report


def _metrics(report: EvaluationReport) -> None:
    main = report.methods[report.default_method]
    cols = st.columns(5)
    cols[0].metric("Top-1", percent(main.top1), border=True, help="Right individual ranked first")
    cols[1].metric("Top-3", percent(main.top3), border=True)
    cols[2].metric("Top-5", percent(main.top5), border=True)
    cols[3].metric("Novelty AUROC", f"{main.novelty_auroc:.3f}", border=True, help="Telling new from known animals")
    cols[4].metric(
        "Median query", f"{report.latency_median_s:.1f} s", border=True, help=f"p95 {report.latency_p95_s:.1f} s"
    )
    st.caption(
        f"{report.gallery_photos} gallery photos, {report.queries} queries ({main.known_queries} of known and "
        f"{main.novel_queries} of new individuals: {', '.join(md(n) for n in report.novel_identities) or 'none'}); "
        f"device {report.settings.get('device')}."
    )
    st.caption(f"Where the time went: {md(time_stages(report))}")
    st.dataframe(
        [
            {
                "Scoring": m.method + (" (in use)" if m.method == report.default_method else ""),
                "Top-1": m.top1,
                "Top-3": m.top3,
                "Top-5": m.top5,
                "Novelty AUROC": m.novelty_auroc,
                "New/known decision": m.new_decision_accuracy,
            }
            for m in report.methods.values()
        ],
        hide_index=True,
        width="stretch",
        column_config={
            name: st.column_config.NumberColumn(format="%.3f")
            for name in ("Top-1", "Top-3", "Top-5", "Novelty AUROC", "New/known decision")
        },
    )


def time_stages(report: EvaluationReport) -> str:
    """The stages that cost time, largest first, so a 94 s query is not explained by "extraction 0.01 s"."""
    extraction = report.extraction_s_per_photo
    matching = report.latency_median_s - extraction
    stages = [
        (report.index_build_s, f"preparing the gallery once: {report.index_build_s:.1f} s"),
        (matching, f"comparing each query with the gallery: {matching:.1f} s (median)"),
        (extraction, f"finding a query's keypoints: {extraction:.2f} s (cached photos take no time)"),
    ]
    exhaustive = report.exhaustive_latency_median_s
    if exhaustive == exhaustive:  # not NaN: every scoring method was also tried on the whole gallery
        stages.append((exhaustive, f"comparing each query with every gallery photo, for the table: {exhaustive:.1f} s"))
    ordered = sorted((s for s in stages if s[0] == s[0]), key=lambda s: -s[0])
    return "; ".join(text for _, text in ordered) + "."


def _figures(report: EvaluationReport, index) -> None:
    known = [q.best_probability for q in report.queries_detail if not q.novel]
    novel = [q.best_probability for q in report.queries_detail if q.novel]
    left, right = st.columns(2, gap="medium")
    with left:
        st.plotly_chart(charts.roc_figure(known, novel), key="evaluate.roc", config={"displayModeBar": False})
        st.caption("How well the best candidate's probability tells a known turtle from a new one.")
    with right:
        same, different = evaluation.pair_scores(index, report.default_method) if index is not None else ((), ())
        if len(same) or len(different):
            groups, title = {"same individual": same, "different individuals": different}, "gallery photo pairs"
        else:  # no sampled pairs (the shipped prior): the queries' own scores tell the same story
            right, wrong = evaluation.query_scores(report)
            groups, title = {"right individual": right, "best wrong individual": wrong}, "each known query"
        if any(len(v) for v in groups.values()):
            st.plotly_chart(
                charts.histogram_figure(
                    groups, title=f"Scores of {title}", x_title="score (standard deviations above the null)"
                ),
                key="evaluate.pairs",
                config={"displayModeBar": False},
            )
            st.caption("The further apart the two colours, the easier the decision.")
    st.plotly_chart(
        charts.histogram_figure(
            {"known individuals": known, "new individuals": novel},
            title="Best candidate's probability per query",
            x_title="probability",
            y_title="share of queries",
            bins=20,
        ),
        key="evaluate.queries",
        config={"displayModeBar": False},
    )


def _evaluation_index(rows: list):
    """The protocol's gallery as an index (features and pairs are cached, so this is quick after a run)."""
    with ctx.guard("preparing the evaluation gallery"):
        return evaluation.evaluation_index(ctx.app(), rows)
    return None


def _queries(report: EvaluationReport, rows: list, index) -> None:
    labels = evaluation.photo_labels(ctx.app())
    slowest = evaluation.slowest_queries(report, 5)
    wrongest = evaluation.wrongest_queries(report, 5)
    left, right = st.columns(2, gap="medium")

    def table(items):
        return [
            {
                "Photo": labels.get(q.path, Path(q.path).name),
                "Individual": q.identity + (" (new)" if q.novel else ""),
                "Ranked": ", ".join(q.ranking[:3]),
                "Best": percent(q.best_probability),
                "New": percent(q.new_individual_probability),
                "Seconds": round(q.seconds, 2),
            }
            for q in items
        ]

    with left:
        st.markdown("**Slowest queries**")
        st.dataframe(table(slowest), hide_index=True, width="stretch")
    with right:
        st.markdown("**Wrongest queries**")
        if wrongest:
            st.dataframe(table(wrongest), hide_index=True, width="stretch")
        else:
            st.caption("Every query was answered correctly.")
    pool = {q.path: q for q in [*wrongest, *slowest]}
    if not pool:
        return
    chosen = st.selectbox(
        "Look at the matches of a query",
        list(pool),
        index=None,
        format_func=lambda p: f"{labels.get(p, Path(p).name)}{' (new individual)' if pool[p].novel else ''}",
        key="evaluate.look",
        placeholder="Choose a slow or wrong query",
    )
    if chosen is None or index is None:
        return
    with ctx.guard("matching the query"):
        result, image = evaluation.explain_query(ctx.app(), index, next(r for r in rows if r.path == chosen))
        truth = pool[chosen].identity
        match_explorer(
            result, image, key="evaluate.explore", default_identity=truth if result.candidate(truth) else None
        )


def main() -> None:
    ctx.require("admin", "reviewer")
    st.title("Evaluate on this gallery")
    st.write(
        "Holds back a quarter of the individuals as *new* and every second photo of the others as queries, "
        "identifies them against the rest, and reports how often the right individual comes first. "
        "Keep this page open while it runs."
    )
    all_rows = evaluation.current_manifest(ctx.app())
    identities = sorted({r.identity for r in all_rows})
    if len(identities) < 2:
        st.info("The evaluation needs a gallery with at least two individuals.")
        return
    chosen = st.multiselect(
        "Individuals to include (all when empty)", identities, key="evaluate.identities", placeholder="All individuals"
    )
    rows = [r for r in all_rows if not chosen or r.identity in chosen]
    split = protocol_split(rows)
    pairs = len(split.gallery) * len(split.queries)
    st.caption(
        f"{len(split.gallery)} gallery photos, {len(split.queries)} queries: {pairs:,} photo pairs to match "
        f"with {md(ctx.app().settings.engine.describe())}."
    )
    if len(split.gallery) == 0 or len(split.queries) == 0:
        st.warning("Choose individuals with at least two photos each.")
        return
    if st.button("Run the evaluation", key="evaluate.run", type="primary", icon=":material/play_arrow:"):
        report = _run(rows)
        if report is not None:
            st.session_state[REPORT] = (report, [r.path for r in rows], _evaluation_index(rows))
    stored = st.session_state.get(REPORT)
    if stored is None:
        return
    report, paths, index = stored
    kept = set(paths)
    rows = [r for r in all_rows if r.path in kept]
    _metrics(report)
    _figures(report, index)
    _queries(report, rows, index)
    st.download_button(
        "Download the full report (JSON)",
        json.dumps(report.to_dict(), indent=2, default=str),
        file_name="scute-evaluation.json",
        mime="application/json",
        key="evaluate.json",
        on_click="ignore",
    )
    st.download_button(
        "Download every query (CSV)",
        evaluation.report_csv(report),
        file_name="scute-evaluation-queries.csv",
        mime="text/csv",
        key="evaluate.csv",
        on_click="ignore",
    )


main()
