"""One module per device family: its codec (host side) and its device model (simulator side)."""
