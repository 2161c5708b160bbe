"""The torch modules behind the family modules. These import torch; only `build()` imports them."""
