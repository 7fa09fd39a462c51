"""GradLab's browser app: `streamlit run app.py` (or `gradlab app`)."""

from pathlib import Path

import streamlit as st

PAGES = Path(__file__).parent / "pages"

st.set_page_config(page_title="GradLab", page_icon="∂", layout="wide")
navigation = st.navigation(
    [
        st.Page(PAGES / "playground.py", title="Playground", icon="🧮", url_path="playground"),
    ]
)
navigation.run()
