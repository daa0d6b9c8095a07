"""The installed torch / torchvision / torch-fidelity must be a working set."""

import torch


def test_torchvision_ops_and_torch_fidelity_import():
    import torch_fidelity
    import torchvision
    from torchvision.ops import nms

    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 3.0, 3.0]])
    keep = nms(boxes, torch.tensor([0.9, 0.5, 0.8]), 0.5)
    assert keep.tolist() == [0, 2]  # a broken torch/torchvision pair fails here
    assert hasattr(torch_fidelity, "calculate_metrics") and torchvision.__version__
