"""Old home of :mod:`gradlab.zoo.models`, kept so that existing plugins still import."""

from gradlab.zoo.models import BasicBlock, LeNet, LSTMRegressor, ResNet, TransformerEncoder, mlp

__all__ = ["BasicBlock", "LSTMRegressor", "LeNet", "ResNet", "TransformerEncoder", "mlp"]
