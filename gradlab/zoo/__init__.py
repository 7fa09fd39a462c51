"""Ready-made subjects: small models, bundled data and preset cases.

:mod:`gradlab.zoo.models` builds the architectures the lessons use (MLP,
LeNet, ResNet, LSTM, a Transformer encoder) with random weights;
:mod:`gradlab.zoo.data` makes data sets on the spot (points, the 8x8 digits
scikit-learn ships); :mod:`gradlab.zoo.presets` pairs them into
:class:`Case` records (model, batch, target, loss) that the app, the CLI and
the debugger's gallery all start from. Nothing is downloaded.
"""

from gradlab.zoo import data, models, presets
from gradlab.zoo.presets import Case, Preset

__all__ = ["Case", "Preset", "data", "models", "presets"]
