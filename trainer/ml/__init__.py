"""ML: the marts as arrays, the two-tower model, its losses, the training loop and evaluation."""
