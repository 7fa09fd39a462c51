"""A corpus of real architectures that nobody here wrote, built small and offline.

Each :class:`Arch` builds a model from a tiny config with random weights (no
download) and a function that runs it on a fixed batch and returns a scalar
loss. ``transformers`` models come from its own config classes; the rest are
PyTorch's own modules (``nn.Transformer``, LSTM, GRU) and small CNNs in
channels-last memory format, and activation checkpointing in both of its
modes. ``source(name)`` gives the text of a ``make()`` target file that builds
the same model, for the CLI.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None


@dataclass(frozen=True)
class Arch:
    """One architecture of the corpus."""

    name: str
    build: Callable[[], nn.Module]
    loss: Callable[[nn.Module], torch.Tensor]  # forward on a fixed batch -> scalar loss
    hf: bool = False  # needs transformers
    slow: bool = False
    train: bool = True  # train() mode (dropout on), else eval()
    layer: str = ""  # a layer inside, with a weight, that the tests break


def _quiet() -> None:
    import transformers

    transformers.logging.set_verbosity_error()


def _ids(batch: int = 2, length: int = 8, vocab: int = 64, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, vocab, (batch, length), generator=g)


# -- transformers ------------------------------------------------------------------


def gpt2() -> nn.Module:
    _quiet()
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=4,
                        attn_implementation="eager")  # fmt: skip
    return GPT2LMHeadModel(config)


def llama() -> nn.Module:
    """Rotary position embeddings and grouped-query attention (2 key/value heads for 4)."""
    _quiet()
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=32, attn_implementation="eager")  # fmt: skip
    return LlamaForCausalLM(config)


def qwen2() -> nn.Module:
    _quiet()
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=32, attn_implementation="eager")  # fmt: skip
    return Qwen2ForCausalLM(config)


def causal_lm_loss(model: nn.Module) -> torch.Tensor:
    """The loss the model computes inside from ``labels=``."""
    ids = _ids()
    return model(input_ids=ids, labels=ids).loss  # type: ignore[no-any-return]


def bert() -> nn.Module:
    """An encoder with a padding index and an attention mask."""
    _quiet()
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=64, max_position_embeddings=32,
                        pad_token_id=0, num_labels=3, attn_implementation="eager")  # fmt: skip
    return BertForSequenceClassification(config)


def bert_loss(model: nn.Module) -> torch.Tensor:
    ids = _ids()
    ids[1, 5:] = 0  # padding
    mask = (ids != 0).long()
    labels = torch.tensor([0, 2])
    return model(input_ids=ids, attention_mask=mask, labels=labels).loss  # type: ignore[no-any-return]


def t5() -> nn.Module:
    _quiet()
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    config = T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=1,
                      num_decoder_layers=1, num_heads=4, decoder_start_token_id=0,
                      pad_token_id=0, attn_implementation="eager")  # fmt: skip
    return T5ForConditionalGeneration(config)


def t5_loss(model: nn.Module) -> torch.Tensor:
    return model(input_ids=_ids(), labels=_ids(length=6, seed=2)).loss  # type: ignore[no-any-return]


def vit() -> nn.Module:
    """A vision transformer: a convolution cuts the image into patches."""
    _quiet()
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=32,
                       num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                       num_labels=5, attn_implementation="eager")  # fmt: skip
    return ViTForImageClassification(config)


def vit_loss(model: nn.Module) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    pixels = torch.randn(2, 3, 16, 16, generator=g)
    return model(pixel_values=pixels, labels=torch.tensor([1, 4])).loss  # type: ignore[no-any-return]


def whisper() -> nn.Module:
    _quiet()
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    config = WhisperConfig(vocab_size=64, num_mel_bins=8, d_model=32, encoder_layers=1,
                           decoder_layers=1, encoder_attention_heads=4,
                           decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                           max_source_positions=16, max_target_positions=16,
                           decoder_start_token_id=1, pad_token_id=0,
                           attn_implementation="eager")  # fmt: skip
    return WhisperForConditionalGeneration(config)


def whisper_loss(model: nn.Module) -> torch.Tensor:
    g = torch.Generator().manual_seed(4)
    features = torch.randn(2, 8, 32, generator=g)  # (B, mel bins, 2 * source positions)
    return model(input_features=features, labels=_ids(length=5, seed=5)).loss  # type: ignore[no-any-return]


# -- PyTorch's own modules -------------------------------------------------------------


def transformer() -> nn.Module:
    torch.manual_seed(0)
    with warnings.catch_warnings():  # nested tensors need batch_first; this one is not
        warnings.simplefilter("ignore", UserWarning)
        return nn.Transformer(d_model=32, nhead=4, num_encoder_layers=1, num_decoder_layers=1,
                              dim_feedforward=64)  # fmt: skip


def transformer_loss(model: nn.Module) -> torch.Tensor:
    g = torch.Generator().manual_seed(6)
    src, tgt = torch.randn(5, 2, 32, generator=g), torch.randn(4, 2, 32, generator=g)
    mask = nn.Transformer.generate_square_subsequent_mask(4)
    target = torch.randn(4, 2, 32, generator=g)
    # not out.pow(2).mean(): after the final LayerNorm that is 1 whatever the weights
    return (model(src, tgt, tgt_mask=mask) - target).pow(2).mean()


class Recurrent(nn.Module):
    """An LSTM and a GRU stacked, then a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, 16, num_layers=2, batch_first=True)
        self.gru = nn.GRU(16, 16, batch_first=True, bidirectional=True)
        self.head = nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(x)  # (B, T, 16)
        h, _ = self.gru(h)  # (B, T, 32)
        return self.head(h[:, -1])  # type: ignore[no-any-return]


def recurrent() -> nn.Module:
    torch.manual_seed(0)
    return Recurrent()


def recurrent_loss(model: nn.Module) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    x = torch.randn(3, 6, 8, generator=g)
    return nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2]))


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv1(x)))
        h = torch.relu(self.conv2(h)) + h  # a residual
        return self.head(h.mean(dim=(2, 3)))  # type: ignore[no-any-return]


def cnn_channels_last() -> nn.Module:
    torch.manual_seed(0)
    return SmallCNN().to(memory_format=torch.channels_last)


def cnn_loss(model: nn.Module) -> torch.Tensor:
    g = torch.Generator().manual_seed(8)
    x = torch.randn(4, 3, 8, 8, generator=g).to(memory_format=torch.channels_last)
    return nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3]))


class Checkpointed(nn.Module):
    """Blocks run under activation checkpointing: reentrant or not."""

    def __init__(self, reentrant: bool) -> None:
        super().__init__()
        self.reentrant = reentrant
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(16, 16), nn.GELU(), nn.LayerNorm(16)) for _ in range(3)
        )
        self.head = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = x + checkpoint(block, x, use_reentrant=self.reentrant)
        return self.head(x)  # type: ignore[no-any-return]


def checkpointed(reentrant: bool) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        torch.manual_seed(0)
        return Checkpointed(reentrant)

    return build


def checkpoint_loss(model: nn.Module) -> torch.Tensor:
    g = torch.Generator().manual_seed(9)
    # the input requires grad: a reentrant checkpoint passes no gradient otherwise
    x = torch.randn(4, 16, generator=g).requires_grad_()
    return model(x).pow(2).mean()


ARCHS: tuple[Arch, ...] = (
    Arch("gpt2", gpt2, causal_lm_loss, hf=True, layer="transformer.h.0.mlp.c_fc"),
    Arch("llama", llama, causal_lm_loss, hf=True, layer="model.layers.0.mlp.up_proj"),
    Arch(
        "qwen2",
        qwen2,
        causal_lm_loss,
        hf=True,
        train=False,
        layer="model.layers.1.self_attn.v_proj",
    ),
    Arch("bert", bert, bert_loss, hf=True, layer="bert.encoder.layer.0.intermediate.dense"),
    Arch("t5", t5, t5_loss, hf=True, layer="encoder.block.0.layer.1.DenseReluDense.wi"),
    Arch(
        "vit",
        vit,
        vit_loss,
        hf=True,
        train=False,
        layer="vit.embeddings.patch_embeddings.projection",
    ),
    Arch("whisper", whisper, whisper_loss, hf=True, slow=True, layer="model.encoder.conv2"),
    Arch("transformer", transformer, transformer_loss, layer="encoder.layers.0.linear1"),
    Arch("recurrent", recurrent, recurrent_loss, layer="head"),
    Arch("cnn_channels_last", cnn_channels_last, cnn_loss, layer="conv1"),
    Arch("checkpoint_reentrant", checkpointed(True), checkpoint_loss, layer="blocks.1.0"),
    Arch("checkpoint", checkpointed(False), checkpoint_loss, layer="blocks.1.0"),
)
BY_NAME = {a.name: a for a in ARCHS}


def make(name: str) -> tuple[nn.Module, torch.Tensor]:
    """Build ``name`` in its mode and run it: ``(model, loss)``."""
    arch = BY_NAME[name]
    model = arch.build()
    model.train(arch.train)
    torch.manual_seed(10)  # the same dropout masks for every run of one process
    return model, arch.loss(model)


def source(name: str) -> str:
    """A target file for the CLI: ``make()`` builds ``name`` and returns ``(model, loss)``."""
    return (
        "from tests.real_models import make as _make\n\n\n"
        f"def make():\n    return _make({name!r})\n"
    )
