"""A check of the flat-buffer design that tests share."""


def views_intact(grads) -> bool:
    """Whether every ``.grad`` of a FlatGradients' parameters is still its view into the flat
    buffer (False if something replaced one, e.g. ``zero_grad(set_to_none=True)``)."""
    offset, intact = 0, True
    for p in grads.params:
        intact &= p.grad is not None and p.grad.data_ptr() == grads.flat[offset:offset + 1].data_ptr()
        offset += p.numel()
    return intact
