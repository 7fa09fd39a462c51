"""Home: what GradLab is, and where to go."""

from pathlib import Path

import streamlit as st

IMAGES = Path(__file__).parent / "images"

st.title("GradLab")
st.markdown(
    "#### See what PyTorch's autograd really does\n"
    "GradLab draws the backward graph PyTorch actually builds (the `grad_fn` nodes), with "
    "every node's forward value and gradient, and steps through `backward()` node by node "
    "in the order the engine runs it: the chain rule written out in numbers."
)
st.markdown("#### A 30-second tour")
TOUR = (
    (
        "playground.py",
        "Playground",
        "Type a few lines of PyTorch. The graph appears with each node's value; after "
        "`backward()`, each node's gradient and the order the engine ran it. Mistakes such as "
        "a non-scalar `backward()` are explained with their fixes.",
        "playground.png",
    ),
    (
        "model_graph.py",
        "Model graph",
        "Pick a preset model, from linear regression to a transformer, and see its graph "
        "grouped by module, with parameters, gradients and saved-tensor memory.",
        "model_graph.png",
    ),
)
for page, title, text, image in TOUR:
    with st.container(border=True):
        words, picture = st.columns([2, 3])
        with words:
            st.markdown(f"##### {title}")
            st.markdown(text)
            st.page_link(page, label=f"Open the {title}", icon=":material/arrow_forward:")
        with picture:
            if (IMAGES / image).is_file():
                st.image(str(IMAGES / image))
st.caption(
    "Everything shown comes from PyTorch itself: values are the ops' real outputs, and "
    "gradients are what the real backward pass sent."
)
