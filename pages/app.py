"""GradLab's browser app: `gradlab app`, or `streamlit run pages/app.py`.

The entry script lives inside pages/ on purpose: Streamlit treats a pages/
folder *next to* the entry script as legacy page discovery until some session
has run st.navigation, so a link opened on a fresh server would skip this file.
"""

import streamlit as st

from gradlab.isolation import pool

# The warm worker that runs programs starts with the first visit to any page, so the
# first program typed does not wait for torch to load.
pool.shared()
# Page files are named relative to this script's folder, as st.Page resolves them.
st.set_page_config(page_title="GradLab", page_icon="∂", layout="wide")
navigation = st.navigation(
    [
        st.Page("home.py", title="Home", icon=":material/home:", default=True),
        st.Page(
            "playground.py", title="Playground", icon=":material/calculate:", url_path="playground"
        ),
        st.Page(
            "model_graph.py",
            title="Model graph",
            icon=":material/account_tree:",
            url_path="model_graph",
        ),
        st.Page("training.py", title="Training", icon=":material/monitoring:", url_path="training"),
        st.Page("debugger.py", title="Debugger", icon=":material/bug_report:", url_path="debugger"),
    ],
    position="top",  # the whole width for the graph, on a 1280-wide projector too
)
# Less empty space above each page, so a graph starts near the top of the screen.
st.html("<style>.stMainBlockContainer { padding-top: 3.5rem; padding-bottom: 2rem; }</style>")
navigation.run()
