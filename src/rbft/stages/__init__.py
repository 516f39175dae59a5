"""One file per stage of RB-FT (DESIGN.md); `rbft.pipeline` runs them in order."""


def process_state():
    """accelerate's view of the processes of this run (one, or several under torchrun / accelerate launch).

    Without a GPU, processes join over gloo on the CPU; accelerate only does that when told.
    """
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())
