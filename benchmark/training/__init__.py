"""Training a method: the epoch loop (``loop``) and the pieces it is made of."""
