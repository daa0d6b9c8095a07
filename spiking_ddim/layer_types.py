"""Which torch modules the package treats as what: the layers whose operations are counted
and whose analog inputs an input site can code (conv, transposed conv, linear), and the
modules that hand a tensor on unchanged in value, so an FS site's spikes stay spikes
through them (dropout, identity). Torch-only vocabulary shared by conversion and the meter."""

from torch import nn

LAYER_TYPES: tuple[type, ...] = (nn.modules.conv._ConvNd, nn.Linear)
PASS_THROUGH: tuple[type, ...] = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity)
