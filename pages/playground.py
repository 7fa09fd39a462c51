"""Playground: type a tensor program, see the real grad_fn graph."""

import streamlit as st

st.title("Playground")
