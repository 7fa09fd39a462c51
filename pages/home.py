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
        "Type a few lines of PyTorch. The graph appears with each node's value and, after "
        "`backward()`, its gradient, written on the node. Click a node for its card beside "
        "the graph: value, gradient, saved tensors and the chain-rule card, the op's "
        "derivative rule with this node's numbers plugged in. Mistakes such as a non-scalar "
        "`backward()` are explained with their fixes.",
        "playground.png",
    ),
    (
        "playground.py",
        "Step through backward()",
        "Press → (or Space, or a clicker's Page Down): the engine's real order, one op at "
        "a time, with the gradient arriving, the sum where two paths meet, what goes to each "
        "input and what `AccumulateGrad` adds to `.grad`, answered at once in the browser. "
        "*Predict first* hides each answer (and the printed output) until you reveal it; "
        "*Presenter* fills the projector's screen with the graph and the step.",
        "stepper.png",
    ),
    (
        "model_graph.py",
        "Model graph",
        "Pick a preset model, from linear regression to a transformer, and see its graph "
        "grouped by module, folded where blocks repeat (click a module to open it), with "
        "parameters, gradients and saved-tensor memory.",
        "model_graph.png",
    ),
    (
        "training.py",
        "Training",
        "Pick a scenario and press Start: the loss falls, live, while every node of the graph "
        "shows how much gradient passes through it; slow a quick run down with the pace. "
        "Runs are named, kept, filtered, compared and exported.",
        "training.png",
    ),
    (
        "debugger.py",
        "Debugger",
        "Why is a gradient None, NaN, vanishing or exploding? Findings pinned to the node where "
        "the problem starts, in plain words with the fix; a gallery of broken models to learn "
        "from.",
        "debugger.png",
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
