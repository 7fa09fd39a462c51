"""GradLab on real architectures (``transformers``' GPT-2, BERT and ViT) at two sizes.

Run: python benchmarks/bench_real.py [--sizes small working] [--repeat 9] [--threads 1]

For each model, every measure is timed in the same run, interleaved, and the
table shows medians and ratios (the machine may be shared: ratios matter):

* full capture: ``gradlab.record()`` around the forward, ``gradlab.trace`` (with
  values) and ``gradlab.backward`` against a plain forward and ``backward()``;
* ``trace`` (the default, with value summaries, and ``values=False``) against a
  bare walk of ``next_functions`` into networkx and against torchviz's
  ``make_dot``, on the graph of a recorded forward;
* peers, only where they are installed (they are no dependency of GradLab):
  torchview's ``draw_graph`` (a forward, against ``make_dot``) in the same
  run, and torchlens (``trace(..., save_grads=True)`` and ``log_backward``,
  its full capture) after it, interleaved with the plain step alone (torch's
  functions stay slower once torchlens has run), its time shown as its ratio
  to that step times the first run's plain step.

``small`` is the test corpus's size (d_model 32, 2 layers, 8 tokens);
``working`` a model one trains on a laptop (d_model 256, 4 layers, 128 tokens).
Without ``transformers`` it measures PyTorch's own ``nn.Transformer`` instead.
"""

from __future__ import annotations

import argparse
import importlib.util
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from timing import bare_walk, compare, timed
from torch import nn

import gradlab

SIZES = {
    # d_model, layers, heads, tokens (or image side), batch
    "small": (32, 2, 4, 8, 2),
    "working": (256, 4, 4, 128, 4),
}


class LossOf(nn.Module):
    """A model and its batch as one module whose forward returns the loss (for the peers)."""

    def __init__(self, model: nn.Module, loss: Callable[[nn.Module, torch.Tensor], torch.Tensor]):
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.loss(self.model, batch)


@dataclass
class Subject:
    name: str
    module: LossOf
    batch: torch.Tensor


def _quiet() -> None:
    import transformers

    transformers.logging.set_verbosity_error()


def gpt2(d: int, layers: int, heads: int, tokens: int, batch: int) -> Subject:
    _quiet()
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=512, n_positions=tokens, n_embd=d, n_layer=layers,
                        n_head=heads, attn_implementation="eager")  # fmt: skip
    ids = torch.randint(0, 512, (batch, tokens))
    module = LossOf(GPT2LMHeadModel(config), lambda m, x: m(input_ids=x, labels=x).loss)
    return Subject(f"GPT-2, d {d}, {layers} layers, {batch} x {tokens} tokens", module, ids)


def bert(d: int, layers: int, heads: int, tokens: int, batch: int) -> Subject:
    _quiet()
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=512, hidden_size=d, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=4 * d,
                        max_position_embeddings=tokens, num_labels=3,
                        attn_implementation="eager")  # fmt: skip
    ids = torch.randint(1, 512, (batch, tokens))
    ids[0, tokens // 2 :] = 0  # padding, masked out
    labels = torch.arange(batch) % 3

    def loss(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return m(input_ids=x, attention_mask=(x != 0).long(), labels=labels).loss

    module = LossOf(BertForSequenceClassification(config), loss)
    return Subject(f"BERT, d {d}, {layers} layers, {batch} x {tokens} tokens", module, ids)


def vit(d: int, layers: int, heads: int, tokens: int, batch: int) -> Subject:
    _quiet()
    from transformers import ViTConfig, ViTForImageClassification

    side = 16 if tokens <= 16 else 64  # 16 or 64 patches of 4 x 4 / 8 x 8
    patch = 4 if side == 16 else 8
    config = ViTConfig(image_size=side, patch_size=patch, hidden_size=d,
                       num_hidden_layers=layers, num_attention_heads=heads,
                       intermediate_size=4 * d, num_labels=5,
                       attn_implementation="eager")  # fmt: skip
    pixels = torch.randn(batch, 3, side, side)
    labels = torch.arange(batch) % 5
    module = LossOf(
        ViTForImageClassification(config), lambda m, x: m(pixel_values=x, labels=labels).loss
    )
    return Subject(f"ViT, d {d}, {layers} layers, {batch} images {side}x{side}", module, pixels)


def transformer(d: int, layers: int, heads: int, tokens: int, batch: int) -> Subject:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = nn.Transformer(d, heads, layers, layers, 4 * d, batch_first=True)
    src = torch.randn(batch, tokens, d)

    def loss(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return m(x, x).pow(2).mean()

    return Subject(f"nn.Transformer, d {d}, {layers}+{layers} layers", LossOf(model, loss), src)


def measure(subject: Subject, repeat: int, peers: bool) -> dict[str, tuple[float, float]]:
    """Every measure but torchlens, interleaved."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import torchviz

    module, batch = subject.module, subject.batch
    params = dict(module.named_parameters())
    with gradlab.record():
        recorded = module(batch)

    plain = _plain(module, batch)

    def capture() -> None:
        module.zero_grad(set_to_none=True)
        with gradlab.record():
            loss = module(batch)
        gradlab.backward(loss, gradlab.trace(loss, model=module))

    cases = {
        "plain forward + backward": timed(plain),
        "record + trace + backward": timed(capture),
        "bare walk": timed(lambda: bare_walk(recorded)),
        "trace (default, with values)": timed(lambda: gradlab.trace(recorded, model=module)),
        "trace, values=False": timed(lambda: gradlab.trace(recorded, model=module, values=False)),
        "torchviz make_dot": timed(lambda: torchviz.make_dot(recorded, params=params)),
    }
    if peers and importlib.util.find_spec("torchview") is not None:
        from torchview import draw_graph

        cases["torchview draw_graph"] = timed(
            lambda: draw_graph(module, input_data=[batch], depth=99)
        )
    table = compare(cases, repeat)
    return table


def _plain(module: nn.Module, batch: torch.Tensor) -> Callable[[], None]:
    def plain() -> None:
        module.zero_grad(set_to_none=True)
        module(batch).backward()

    return plain


def measure_torchlens(subject: Subject, repeat: int) -> tuple[float, float]:
    """torchlens's full capture against the plain step, interleaved: (its median, the ratio).

    Timed after every other measure of every model: torch's functions stay
    slower once torchlens has run.
    """
    import torchlens
    from torchlens.options import CaptureOptions

    module, batch = subject.module, subject.batch
    options = CaptureOptions(save_grads=True, unwrap_when_done=True)

    def lens() -> None:
        module.zero_grad(set_to_none=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            log = torchlens.trace(module, batch, capture=options)
            log.log_backward(log[log.output_layers[0]].tensor)

    table = compare({"plain": timed(_plain(module, batch)), "torchlens": timed(lens)}, repeat)
    return table["torchlens"][0], table["torchlens"][0] / table["plain"][0]


#: measure -> what its ratio is taken against
BASELINES = {
    "record + trace + backward": "plain forward + backward",
    "trace (default, with values)": "bare walk",
    "trace, values=False": "bare walk",
    "torchviz make_dot": "bare walk",
    "torchview draw_graph": "bare walk",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--no-peers", action="store_true", help="leave torchlens and torchview out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    builders = (gpt2, bert, vit) if importlib.util.find_spec("transformers") else (transformer,)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, medians of {args.repeat}")
    subjects: list[tuple[str, Subject, int, dict[str, tuple[float, float]]]] = []
    for size in args.sizes:
        for build in builders:
            torch.manual_seed(0)
            subject = build(*SIZES[size])
            subject.module.train()
            with gradlab.record():
                nodes = len(gradlab.op_nodes(gradlab.trace(subject.module(subject.batch))))
            table = measure(subject, args.repeat, peers=not args.no_peers)
            subjects.append((size, subject, nodes, table))
    lens = not args.no_peers and importlib.util.find_spec("torchlens") is not None
    for size, subject, nodes, table in subjects:
        print(f"\n{subject.name} ({size}): {nodes} autograd nodes")
        print(f"{'measure':<32} {'ms':>9} {'ratio':>7}  {'against':<26} {'/ make_dot':>10}")
        dot = table["torchviz make_dot"][0]
        for name, (seconds, _) in table.items():
            base = BASELINES.get(name)
            ratio = f"{seconds / table[base][0]:6.2f}x" if base else ""
            versus = f"{seconds / dot:9.2f}x" if name.startswith(("trace", "torchview")) else ""
            print(f"{name:<32} {seconds * 1000:9.2f} {ratio:>7}  {base or '':<26} {versus:>10}")
    if lens:
        print("\ntorchlens, gradients saved, timed after all the above against the plain step")
        for size, subject, _, _ in subjects:
            seconds, ratio = measure_torchlens(subject, args.repeat)
            print(f"{subject.name} ({size}){'':<4} {seconds * 1000:9.2f} {ratio:6.2f}x")


if __name__ == "__main__":
    main()
