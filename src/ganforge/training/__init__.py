"""The training loop and the small pieces it calls (losses, D-input transforms, penalties, EMA, ...)."""
