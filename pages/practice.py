"""Practice: identify photos whose answer is already known, and be told the right one straight away.

The photo comes without its file name, code or notes; the answer shows only after one answers.
"""

from __future__ import annotations

import streamlit as st

from core.service import practice
from core.service.practice import NEW, Feedback, Question, Search
from ui import context as ctx
from ui.components import card_image, match_explorer, md, percent, with_progress

QUESTION, SEARCH, FEEDBACK, DONE = "practice.question", "practice.search", "practice.feedback", "practice.done"
SIDE_WORDS = {"left": "left side", "right": "right side", "top": "top of the head", "unknown": "side not recorded"}


def _next() -> None:
    question: Question | None = st.session_state.pop(QUESTION, None)
    if question is not None:
        st.session_state.setdefault(DONE, []).append(question.sighting_id)
    st.session_state.pop(SEARCH, None)
    st.session_state.pop(FEEDBACK, None)
    st.session_state.pop("practice.choice", None)


def _answer(question: Question, search: Search) -> None:
    feedback: tuple[Feedback, str] | None = st.session_state.get(FEEDBACK)
    labels = {NEW: "A new individual (not in the gallery)"}
    probabilities = {c.identity: c.probability for c in search.result.candidates}
    choice = st.radio(
        "Who is it?",
        [*search.choices, NEW],
        format_func=lambda c: labels.get(c) or f"{md(c)} ({percent(probabilities.get(c))})",
        key="practice.choice",
        disabled=feedback is not None,
    )
    if feedback is None:
        if st.button("Check my answer", key="practice.check", type="primary", icon=":material/task_alt:"):
            user = ctx.require()
            checked = ctx.attempt(
                "checking your answer",
                lambda: practice.answer(ctx.app(), user, question.sighting_id, choice, search.choices),
            )
            if checked is not None:
                st.session_state[FEEDBACK] = (checked, choice)
                st.rerun()
        return
    result, chosen = feedback
    right = labels[NEW].lower() if result.right == NEW else result.right
    if result.correct:
        st.success(f"Right: it is {md(right)}. {md(result.explanation)}", icon=":material/check_circle:")
    else:
        picked = labels[NEW].lower() if chosen == NEW else chosen
        st.error(
            f"Not quite: you chose {md(picked)}, the answer is {md(right)}. {md(result.explanation)}",
            icon=":material/cancel:",
        )
    if st.button("Next photo", key="practice.next", icon=":material/skip_next:"):
        _next()
        st.rerun()


def _results() -> None:
    user = ctx.require()
    st.subheader("Practice results (admins)")
    rows = ctx.attempt("reading the practice results", lambda: practice.agreement(ctx.app(), user)) or []
    if not rows:
        st.caption("Nobody has practised yet.")
        return
    st.dataframe(
        [
            {
                "Volunteer": r.username,
                "Answers": r.answers,
                "Agreed": r.correct,
                "Agreement": percent(r.rate),
                "Last answer": r.last,
            }
            for r in rows
        ],
        hide_index=True,
        column_config={"Last answer": st.column_config.DatetimeColumn(format="D MMM YYYY, HH:mm")},
    )


def main() -> None:
    user = ctx.require()
    st.title("Practice")
    st.caption(
        "Identify photos whose answer is already known: search, choose, and you are told the right answer at once. "
        "Nothing you answer here changes the gallery."
    )
    question: Question | None = st.session_state.get(QUESTION)
    if question is None:
        question = practice.next_question(ctx.app(), user, skip=st.session_state.get(DONE, []))
        if question is not None:
            st.session_state[QUESTION] = question
    if question is None:
        st.info("There is nothing to practise on yet: practice uses other people's sightings once they are decided.")
    else:
        photo_col, work_col = st.columns([1, 2], gap="large")
        with photo_col:
            st.image(
                card_image(str(question.photo_path), question.crop, question.rotation),
                caption=f"Practice photo · {SIDE_WORDS.get(question.side, question.side)}",
            )
            if st.button("Skip this photo", key="practice.skip", type="tertiary"):
                _next()
                st.rerun()
        with work_col:
            search: Search | None = st.session_state.get(SEARCH)
            if search is None:
                if st.button("Search the gallery", key="practice.run", type="primary", icon=":material/search:"):
                    found = with_progress(
                        "searching the gallery", lambda progress: practice.search(ctx.app(), question, progress)
                    )
                    if found is not None:
                        st.session_state[SEARCH] = found
                        st.rerun()
            else:
                st.caption(
                    "The search its sender saw." if search.stored else "Searched against today's gallery just now."
                )
                match_explorer(search.result, search.query_image, key="practice.explore")
                _answer(question, search)
    if user.role == "admin":
        _results()


main()
